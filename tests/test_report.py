"""The report: tables, gains and scaling curves equal the metrics JSONs they come from."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from transrec.errors import TransrecError
from transrec.report.build import build
from transrec.variants import Variant, parse_variant, run_name, split_run

KS = [5, 10, 20]  # evaluate.ks of params.yaml: what put() writes


def put(results: Path, platform: str, name: str, hr10: float, ndcg10: float) -> None:
    path = results / "metrics" / platform / f"{name}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    test = {"hr@5": hr10 / 2, "hr@10": hr10, "hr@20": hr10 * 1.5, "ndcg@5": ndcg10 / 2, "ndcg@10": ndcg10,
            "ndcg@20": ndcg10 * 1.2, "mrr": ndcg10 / 3}
    path.write_text(json.dumps({"platform": platform, "setting": name.split("@")[0], "test": test}))


def test_run_names_round_trip_and_must_be_canonical():
    assert split_run("finetune") == ("finetune", Variant())
    assert split_run("finetune@src0.3-seed1") == ("finetune", Variant(src=0.3, seed=1))
    assert run_name("scratch", Variant(tgt=0.1, seed=2)) == "scratch@tgt0.1-seed2" and run_name("id") == "id"
    with pytest.raises(TransrecError, match="cannot read 'foo'"):
        parse_variant("foo")
    with pytest.raises(TransrecError, match="write 'src0.3-seed1'"):
        parse_variant("seed1-src0.30")
    with pytest.raises(TransrecError, match="share in"):
        parse_variant("tgt1.5")
    with pytest.raises(TransrecError, match="whole number"):
        parse_variant("seed1.5")


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
    out = build(res, KS)

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


def test_the_report_reads_its_metrics_from_evaluate_ks(tmp_path):
    """evaluate.ks: [10] (schema-valid) once crashed the report on its hard-coded hr@5 / hr@20; a metrics file
    written with other ks is one line naming it."""
    res = tmp_path / "results"
    put(res, "t1", "scratch", 0.20, 0.10)
    out = build(res, [10])
    assert list(out["rows"][0])[3:] == ["hr@10", "hr@10_std", "ndcg@10", "ndcg@10_std", "mrr", "mrr_std"]
    assert "| platform | setting | HR@10 | NDCG@10 | MRR |" in (res / "report" / "results.md").read_text()
    with pytest.raises(TransrecError, match=r"scratch.json has no hr@50 \(evaluate.ks asks for it\)"):
        build(res, [10, 50])


def test_missing_metrics_is_one_line(tmp_path):
    with pytest.raises(TransrecError, match="run the evaluate steps first"):
        build(tmp_path / "results", KS)


def test_report_command_logs_tables_and_plots_to_wandb(tmp_path, monkeypatch, capsys):
    import yaml

    from transrec.cli import main
    from transrec.train.tracking import read_offline_run

    monkeypatch.setenv("WANDB_MODE", "offline")
    params = yaml.safe_load((Path(__file__).resolve().parents[1] / "params.yaml").read_text())
    params["paths"]["results"] = str(tmp_path / "results")
    params["wandb"]["group"] = "report-test"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    put(tmp_path / "results", "mixed_target", "scratch", 0.20, 0.10)
    put(tmp_path / "results", "mixed_target", "finetune", 0.30, 0.16)
    put(tmp_path / "results", "mixed_target", "finetune@src0.1", 0.22, 0.11)
    assert main(["report", "--params", str(tmp_path / "params.yaml")]) == 0
    assert "| mixed_target | finetune | 0.3000" in capsys.readouterr().out
    run_dir = next((tmp_path / "results" / "wandb" / "wandb").glob("offline-run-*"))
    back = read_offline_run(run_dir)
    assert back["group"] == "report-test" and back["job_type"] == "report"
    logged = {k: v for h in back["history"] for k, v in h.items()}
    assert logged["results/_type"] == "table-file" and logged["results/nrows"] == 2  # W&B flattens keys
    assert logged["scaling_source/nrows"] == 2 and logged["gains/nrows"] == 1
    assert logged["plots/bars_mixed_target/_type"] == "image-file"
    assert back["summary"]["mixed_target/finetune/ndcg@10"] == pytest.approx(0.16)


def test_readme_block_gets_the_report_and_the_make_run_wall_time(tmp_path):
    from transrec.report.build import update_readme

    res = tmp_path / "results"
    put(res, "t1", "scratch", 0.20, 0.10)
    put(res, "t1", "finetune", 0.30, 0.16)
    put(res, "t1", "scratch@tgt0.5", 0.12, 0.06)
    put(res, "t1", "finetune@tgt0.5", 0.25, 0.12)
    (res / "make_run.json").parent.mkdir(parents=True, exist_ok=True)
    (res / "make_run.json").write_text(json.dumps({"wall_s": 1110, "cores": 2, "finished": "2026-11-27T16:00Z",
                                                   "commit": "abc1234"}))
    out = build(res, KS)
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\nbefore\n<!-- results:begin -->\nold\n<!-- results:end -->\nafter\n")
    figures = update_readme(readme, res, out, figures_dir=tmp_path / "docs" / "figures")
    text = readme.read_text()
    assert text.startswith("# x\n\nbefore\n<!-- results:begin -->") and text.endswith("<!-- results:end -->\nafter\n")
    assert "old" not in text and "| t1 | finetune | 0.3000 | 0.1600" in text
    assert "at commit abc1234 (2026-11-27T16:00Z): 18.5 min wall time on 2 CPU cores" in text
    assert [f.name for f in figures] == ["heatmap.png", "scaling_target.png"] and "](docs/figures/scaling_target.png)" in text
    assert (tmp_path / "docs" / "figures" / "scaling_target.png").read_bytes()[:4] == b"\x89PNG"
    page = tmp_path / "docs" / "results.md"  # a profile's block in docs/: its figures linked from there
    page.write_text("<!-- mine:begin -->\n<!-- mine:end -->\n")
    update_readme(page, res, out, "mine", figures_dir=tmp_path / "docs" / "figures")
    assert "](figures/mine_scaling_target.png)" in page.read_text()
    assert (tmp_path / "docs" / "figures" / "mine_scaling_target.png").is_file()
    readme.write_text("no markers\n")
    with pytest.raises(TransrecError, match="no '<!-- results:begin -->'"):
        update_readme(readme, res, out, figures_dir=tmp_path / "docs" / "figures")


def test_heatmap_and_validation_curves(tmp_path):
    """A heatmap of every platform x setting, and one validation-curve plot per platform with trained
    runs (from their train_log.json); a platform without one (popularity only) gets none."""
    from PIL import Image

    res = tmp_path / "results"
    for setting, ndcg in (("popularity", 0.02), ("scratch", 0.10), ("finetune", 0.16)):
        put(res, "t1", setting, 2 * ndcg, ndcg)
    put(res, "t2", "popularity", 0.05, 0.025)
    for setting in ("scratch", "finetune"):
        log = res / "models" / "t1" / setting / "train_log.json"
        log.parent.mkdir(parents=True)
        log.write_text(json.dumps({"best_step": 20, "evaluations": [
            {"step": s, "valid": {"ndcg@10": v}} for s, v in ((10, 0.05), (20, 0.09), (30, 0.08))]}))
    out = build(res, KS)
    names = [p.name for p in out["plots"]]
    assert names[0] == "heatmap.png" and "validation_t1.png" in names and "validation_t2.png" not in names
    with Image.open(res / "report" / "plots" / "heatmap.png") as img:
        assert img.width > 300 and img.height > 150


def test_every_setting_has_its_own_colour():
    from transrec.report.build import colour
    from transrec.transfer_settings import REGISTRY

    assert {*REGISTRY} >= {"popularity", "pretrain", "scratch", "finetune", "id"}
    assert len({colour(n) for n in REGISTRY}) == len(REGISTRY)
