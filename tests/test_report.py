"""The report: tables, gains and scaling curves equal the metrics JSONs they come from."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from transrec.errors import TransrecError
from transrec.report import results as R
from transrec.report.build import build


def put(results: Path, platform: str, name: str, hr10: float, ndcg10: float) -> None:
    path = results / "metrics" / platform / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    test = {"hr@5": hr10 / 2, "hr@10": hr10, "hr@20": hr10 * 1.5, "ndcg@5": ndcg10 / 2, "ndcg@10": ndcg10,
            "ndcg@20": ndcg10 * 1.2, "mrr": ndcg10 / 3}
    path.write_text(json.dumps({"platform": platform, "setting": name.split("@")[0], "test": test}))


def test_variant_names_round_trip():
    assert R.parse_variant("") == {"src": 1.0, "tgt": 1.0, "seed": None}
    assert R.parse_variant("src0.3-seed1") == {"src": 0.3, "tgt": 1.0, "seed": 1}
    assert R.variant_name(src=0.3, seed=1) == "src0.3-seed1" and R.variant_name() == ""
    with pytest.raises(TransrecError, match="cannot read 'foo'"):
        R.parse_variant("foo")


def test_tables_gains_and_scaling_equal_the_json(tmp_path):
    res = tmp_path / "results"
    put(res, "t1", "popularity", 0.10, 0.05)
    put(res, "t1", "scratch", 0.20, 0.10)
    put(res, "t1", "finetune", 0.30, 0.16)
    put(res, "t1", "finetune@seed1", 0.34, 0.18)   # a second seed of the main point
    put(res, "t1", "finetune@src0.1", 0.22, 0.11)
    put(res, "t1", "finetune@src0.1-seed1", 0.24, 0.13)
    put(res, "t1", "scratch@tgt0.5", 0.12, 0.06)
    put(res, "t1", "finetune@tgt0.5", 0.25, 0.12)
    out = build(res)

    rows = {(r["platform"], r["setting"]): r for r in csv.DictReader((res / "report" / "results.csv").open())}
    assert float(rows[("t1", "scratch")]["hr@10"]) == pytest.approx(0.20)
    assert float(rows[("t1", "finetune")]["hr@10"]) == pytest.approx(0.32)        # mean of 0.30 and 0.34
    assert float(rows[("t1", "finetune")]["hr@10_std"]) == pytest.approx(0.028284, abs=1e-6)
    assert rows[("t1", "finetune")]["seeds"] == "2"
    assert [r["setting"] for r in out["rows"]] == ["popularity", "scratch", "finetune"]

    gain = next(csv.DictReader((res / "report" / "gains.csv").open()))
    assert float(gain["ndcg@10_gain"]) == pytest.approx(0.17 - 0.10)
    assert float(gain["ndcg@10_gain_rel"]) == pytest.approx(0.7)

    src = list(csv.DictReader((res / "report" / "scaling_source.csv").open()))
    assert [(r["setting"], float(r["fraction"]), round(float(r["ndcg@10"]), 4)) for r in src] == \
        [("finetune", 0.1, 0.12), ("finetune", 1.0, 0.17)]
    tgt = list(csv.DictReader((res / "report" / "scaling_target.csv").open()))
    assert {(r["setting"], float(r["fraction"])) for r in tgt} == {("scratch", 0.5), ("scratch", 1.0),
                                                                    ("finetune", 0.5), ("finetune", 1.0)}
    for name in ("bars_t1.png", "scaling_source.png", "scaling_target.png"):
        assert (res / "report" / "plots" / name).read_bytes()[:4] == b"\x89PNG"
    assert "| t1 | finetune | 0.3200 ± 0.0283" in (res / "report" / "results.md").read_text()
    summary = json.loads((res / "report" / "summary.json").read_text())
    assert summary["results"]["t1/scratch"]["ndcg@10"] == pytest.approx(0.10)


def test_missing_metrics_is_one_line(tmp_path):
    with pytest.raises(TransrecError, match="run the evaluate steps first"):
        build(tmp_path / "results")
