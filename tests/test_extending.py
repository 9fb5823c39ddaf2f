"""The docs pages on extending transrec, done: each test takes the code block of its page (docs/*.md) and
runs it through the real pipeline, so a page that drifts from the code fails here."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image

from transrec import jobs
from transrec import params as P
from transrec.cli import main
from transrec.errors import TransrecError
from transrec.model import checkpoint as ckpt
from transrec.tiny import with_results

ROOT = Path(__file__).resolve().parents[1]


def code_blocks(page: str, language: str = "python") -> list[str]:
    text = (ROOT / "docs" / page).read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


# ---- docs/adding-a-platform.md -----------------------------------------------------------------------
def test_the_platform_adapter_of_the_docs_runs_every_data_step(tmp_path, monkeypatch):
    from transrec.platforms import ADAPTER_MODULES

    (module,) = code_blocks("adding-a-platform.md")
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "docs_jsonl_adapter.py").write_text(module)
    monkeypatch.syspath_prepend(str(tmp_path / "pkg"))
    monkeypatch.setitem(ADAPTER_MODULES, "jsonl", "docs_jsonl_adapter")  # the one line in ADAPTER_MODULES

    folder = tmp_path / "my-platform"
    (folder / "covers").mkdir(parents=True)
    for n, item in enumerate("abc"):  # covers of a, b, c; d's file is missing; e has none
        Image.new("RGB", (24, 20), (60 * n, 200, 30)).save(folder / "covers" / f"{item}.jpg", "JPEG")
    catalog = [{"id": k, "title": f"title of {k}", "cover": f"{k}.jpg" if k != "e" else None} for k in "abcde"]
    (folder / "catalog.jsonl").write_text("\n".join([*map(json.dumps, catalog), '{"id": "f"}']) + "\n")
    events = [{"user": u, "item": i, "ts": t} for u, seq in (("u1", "abcd"), ("u2", "bcde"), ("u3", "aeb"))
              for t, i in enumerate(seq)]
    (folder / "events.jsonl").write_text("\n".join([*map(json.dumps, events), "not json"]) + "\n")

    monkeypatch.chdir(tmp_path)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = {**base["data"], "image": {"size": 16}, "text": {"tokenizer": "minilm", "max_len": 16},
            "filter": {"min_user_len": 3, "k_core": 0}}
    platform = {"adapter": "jsonl", "role": "target", "location": {"path": str(folder)}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(
        {"seed": 0, "paths": {"data": "data", "results": "results"}, "data": data, "platforms": {"mine": platform}}))
    P.load("params.yaml")  # valid: the schema's adapter enum follows ADAPTER_MODULES
    for step in ("download", "clean", "resize", "tokenize", "split"):
        assert main([step, "mine"]) == 0, step
    stats = json.loads((tmp_path / "data" / "processed" / "mine" / "stats.json").read_text())
    c = stats["clean"]
    # 11 events + 1 line that is not JSON (quarantined); 6 catalogue lines, "f" lacks fields (quarantined)
    assert c["interactions"]["read"] == 12 and c["interactions"]["quarantined"] == 1 and c["interactions"]["kept"] == 11
    assert c["items"]["quarantined"] == 1 and c["items"]["kept"] == 5
    assert c["items"]["image_missing"] == 1  # d's cover file is not there: d is shown by its title
    assert stats["resize"]["ok"] == 3
    assert stats["split"]["users"] == 3


def test_an_unknown_adapter_is_refused_in_one_line(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["platforms"]["source"]["adapter"] = "jsonl"
    with pytest.raises(TransrecError, match="platforms.source.adapter: expected one of synthetic | csv"):
        P.validate(params)


# ---- docs/adding-a-setting.md ------------------------------------------------------------------------
def test_the_setting_of_the_docs_is_one_record(tiny_world_params, tmp_path, monkeypatch):
    from transrec.report.build import colour
    from transrec.transfer_settings import REGISTRY, Setting

    (record_code,) = code_blocks("adding-a-setting.md")
    record = eval(record_code, {"Setting": Setting})  # the page's record, as written
    monkeypatch.setitem(REGISTRY, record.name, record)

    params = with_results(tiny_world_params, tmp_path / "results", tmp_path / "params.yaml",
                          transfer={"settings": ["scratch", record.name]})
    params["study"]["scaling"]["settings"] = [record.name]  # a replicate-able setting: it trains
    P.validate(params)
    job = jobs.job(params, "transfer", target="tgt", run=record.name)
    assert not any("models/" in i for i in job.inputs)  # from_source False: no source model to wait for
    assert f"transfer-tgt-{record.name}" in {j.name for j in jobs.jobs(params)}
    assert re.fullmatch(jobs.run_pattern(), f"{record.name}@seed1")
    assert colour(record.name) == record.colour

    p = ["--params", str(tmp_path / "params.yaml")]
    assert main(["cache", "tgt", *p]) == 0 and main(["transfer", "tgt", record.name, *p]) == 0
    assert main(["transfer", "tgt", "scratch", *p]) == 0
    models = tmp_path / "results" / "models" / "tgt"
    kept, trained = (ckpt.read(models / run / "model") for run in (record.name, "scratch"))
    items = [k for k in kept["state"] if k.startswith("items.")]
    assert kept["items_frozen"] and items
    # the same initialisation (train.seed), then only scratch's item tower moved
    from transrec.data.platform import PlatformData
    from transrec.model.build import build_model
    from transrec.paths import processed_dir

    torch.manual_seed(params["train"]["seed"])
    fresh = build_model(params, PlatformData(processed_dir(params, "tgt"), "tgt"), "content", "cpu", True,
                        params["train"]["cache_dtype"]).state_dict()
    assert all(torch.equal(kept["state"][k], fresh[k]) for k in items)
    assert any(not torch.equal(trained["state"][k], fresh[k]) for k in items)
    card = (models / record.name / "model" / "README.md").read_text()
    assert record.summary in card


# ---- docs/adding-a-metric.md -------------------------------------------------------------------------
def test_the_metric_of_the_docs_is_one_entry(tiny_world_params, tmp_path, monkeypatch):
    from transrec.evaluate import metrics as M

    (entry,) = code_blocks("adding-a-metric.md")
    name, expression = re.fullmatch(r'"(\w+)": (lambda .*),\s*', entry).groups()
    monkeypatch.setitem(M.AT_K, name, eval(expression, {"torch": torch}))

    ranks = [0, 1, 4, 20]  # by hand: MRR@5 = (1 + 1/2 + 1/5 + 0) / 4; the whole-list MRR adds 1/21
    got = M.metrics_from_ranks(torch.tensor(ranks), [5])
    assert got["mrr@5"] == pytest.approx((1 + 1 / 2 + 1 / 5) / 4)
    assert got["mrr"] == pytest.approx((1 + 1 / 2 + 1 / 5 + 1 / 21) / 4)
    assert M.per_user(ranks, "mrr@5").tolist() == pytest.approx([1, 1 / 2, 1 / 5, 0])
    assert "mrr@10" in M.metric_names([5]) and "mrr" in M.metric_names([5])

    params = with_results(tiny_world_params, tmp_path / "results", tmp_path / "params.yaml")
    assert main(["evaluate", "tgt", "popularity", "--params", str(tmp_path / "params.yaml")]) == 0
    metrics = json.loads((tmp_path / "results" / "metrics" / "tgt" / "popularity.json").read_text())
    ks = sorted(set(params["evaluate"]["ks"]) | {10})
    assert {f"mrr@{k}" for k in ks} <= set(metrics["test"]) and metrics["test"]["mrr@10"] <= metrics["test"]["mrr"]
    from transrec.report.build import build

    out = build(tmp_path / "results", params["evaluate"]["ks"], "tgt")
    assert "mrr@10" in out["rows"][0]  # the report's CSV rows carry it
