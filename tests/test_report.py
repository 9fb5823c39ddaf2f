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


def put_ranks(results: Path, platform: str, name: str, ranks: list[int], targets: list[int] | None = None,
              counts: list[int] | None = None) -> None:
    """A run as the evaluation writes it: metrics file from the ranks, run info with the ranks (and the cold-item
    split when `counts`, the training count of each item, is given)."""
    import numpy as np

    from transrec.evaluate.metrics import metrics_from_ranks
    from transrec.evaluate.per_user import cold_items, ranks_record

    targets = np.arange(len(ranks)) if targets is None else np.array(targets)
    info = {"test_ranks": ranks_record(targets, np.array(ranks))}
    if counts is not None:
        info["cold_items"] = cold_items(np.array(counts), targets, np.array(ranks), KS)
    for folder, doc in (("run_info", info),
                        ("metrics", {"test": metrics_from_ranks(ranks, KS)})):
        path = results / folder / platform / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc))


def binomial_quantile(n: int, q: float) -> float:
    """The q-quantile of Binomial(n, 1/2) / n: where the bootstrap mean of n users, half with a difference of 1 and
    half with none, lands."""
    from math import comb

    cdf = 0.0
    for x in range(n + 1):
        cdf += comb(n, x) / 2 ** n
        if cdf >= q:
            return x / n
    return 1.0


def test_paired_bootstrap_intervals_on_hand_computable_cases():
    import numpy as np

    from transrec.report.intervals import paired_bootstrap, within_noise

    # every user gains the same 0.25: every resample's gain is 0.25, so is the whole interval
    base = np.random.default_rng(1).random((1, 50, 1))
    gain, low, high = paired_bootstrap(base + 0.25, base)
    assert (gain[0], low[0], high[0]) == pytest.approx((0.25, 0.25, 0.25), abs=1e-12)
    assert not within_noise(low[0], high[0])
    # 10 users, 5 hit with the one setting and miss with the other, 5 the same with both: a resample's gain is
    # Binomial(10, 1/2) / 10, whose 2.5% and 97.5% quantiles are 0.2 and 0.8 (P(X <= 1) = 11/1024 < 0.025 <
    # P(X <= 2) = 56/1024); 2000 resamples put the empirical quantiles on those values
    over, base = np.array([1.0] * 5 + [0.0] * 5)[None, :, None], np.zeros((1, 10, 1))
    gain, low, high = paired_bootstrap(over, base)
    assert (binomial_quantile(10, 0.025), binomial_quantile(10, 0.975)) == (0.2, 0.8)
    assert (gain[0], low[0], high[0]) == pytest.approx((0.5, 0.2, 0.8))
    # the pairing: both sides vary a lot across users but by the same amount, so the gain does not
    spread = np.linspace(0, 1, 10)[None, :, None]
    assert np.concatenate(paired_bootstrap(spread + over, spread)[1:]) == pytest.approx([0.2, 0.8])
    # seeds: `over` has two replicates (every user hits with seed 0, none with seed 1), `base` one that never
    # hits; a resample draws over's seeds: {0, 0}, {0, 1} / {1, 0}, {1, 1} -> gains 1, 0.5, 0 (1/4, 1/2, 1/4)
    seeds = np.stack([np.ones((8, 1)), np.zeros((8, 1))])
    gain, low, high = paired_bootstrap(seeds, np.zeros((1, 8, 1)))
    assert (gain[0], low[0], high[0]) == (0.5, 0.0, 1.0) and within_noise(low[0], high[0])
    # several metrics at once, the same draws for each
    both = paired_bootstrap(np.concatenate([over, 2 * over], 2), np.zeros((1, 10, 2)))
    assert both[1] == pytest.approx([0.2, 0.4]) and both[2] == pytest.approx([0.8, 1.6])


def test_gains_carry_paired_intervals_from_the_run_info_ranks(tmp_path):
    """4 test users. finetune ranks every target first, scratch every target 11th: HR@10 and NDCG@10 gain 1 for
    every user, interval [1, 1]. Popularity ranks users 0 and 3 first, 1 and 2 20th: finetune's per-user
    HR@10 gain is (0, 1, 1, 0); a resample's gain is Binomial(4, 1/2) / 4, each end with probability 1/16 >
    2.5%, so the interval is [0, 1]: within noise."""
    import math

    res = tmp_path / "results"
    put_ranks(res, "t1", "scratch", [10, 10, 10, 10])
    put_ranks(res, "t1", "finetune", [0, 0, 0, 0])
    put_ranks(res, "t1", "finetune@seed1", [0, 0, 0, 0])
    put_ranks(res, "t1", "popularity", [0, 19, 19, 0])
    out = build(res, KS)
    gains = {g["base"]: g for g in csv.DictReader((res / "report" / "gains.csv").open())}
    scratch, popularity = gains["scratch"], gains["popularity"]
    assert scratch["seeds_over"] == "2" and scratch["seeds_base"] == "1"
    for m in ("hr@10", "ndcg@10"):
        assert [float(scratch[f"{m}_{k}"]) for k in ("gain", "low", "high")] == pytest.approx([1.0, 1.0, 1.0])
        assert scratch[f"{m}_within_noise"] == "False"
    assert [float(popularity[f"hr@10_{k}"]) for k in ("gain", "low", "high")] == pytest.approx([0.5, 0.0, 1.0])
    assert popularity["hr@10_within_noise"] == "True"
    ndcg_pop = (1 + 1 / math.log2(21)) / 2  # NDCG@10 of rank 19 is 0: per-user gains (0, 1, 1, 0) as well
    assert float(popularity["ndcg@10_gain"]) == pytest.approx(1 - 0.5, abs=1e-6) and ndcg_pop > 0.5
    md = out["markdown"]
    assert "| t1 | 100% | scratch | 0.0000 | 1.0000 | +1.0000 [+1.0000, +1.0000] |" in md
    assert "| t1 | 100% | popularity | 0.5000 | 1.0000 | +0.5000 (+100%) [+0.0000, +1.0000] within noise |" in md
    assert "n/a" not in md
    summary = json.loads((res / "report" / "summary.json").read_text())
    assert summary["gains"]["t1/finetune-popularity"] == {"hr@10_gain": 0.5, "hr@10_low": 0.0, "hr@10_high": 1.0,
                                                          "ndcg@10_gain": 0.5, "ndcg@10_low": 0.0, "ndcg@10_high": 1.0}
    # a run ranked on another split (other user count, or other test items) is refused in one line
    put_ranks(res, "t1", "id", [0, 0, 0])
    with pytest.raises(TransrecError, match=r"t1: .*id.json ranks 3 test users against 4 in .*finetune.json: .*cannot be paired"):
        build(res, KS)
    put_ranks(res, "t1", "id", [0, 0, 0, 0], targets=[3, 2, 1, 0])
    with pytest.raises(TransrecError, match=r"id.json ranks other test items than in .*finetune.json"):
        build(res, KS)
    (res / "run_info" / "t1" / "id.json").write_text(json.dumps({"test_ranks": "0 0 0 0"}))
    with pytest.raises(TransrecError, match="id.json: test_ranks or cold_items is not what the evaluation writes"):
        build(res, KS)


def test_cold_items_table_from_the_run_info(tmp_path):
    """4 test users whose targets (items 0-3) occur 0, 3, 5 and 0 times in training: buckets 0 (users 0, 3),
    1-4 (user 1), 5+ (user 2). scratch ranks them 0, 1, 30, 30 with seed 0 and 30, 1, 0, 0 with seed 1."""
    import math

    res = tmp_path / "results"
    counts = [0, 3, 5, 0]
    put_ranks(res, "t1", "scratch", [0, 1, 30, 30], counts=counts)
    put_ranks(res, "t1", "scratch@seed1", [30, 1, 0, 0], counts=counts)
    put(res, "t1", "popularity", 0.10, 0.05)  # evaluated before the split was kept
    out = build(res, KS)
    row = next(r for r in csv.DictReader((res / "report" / "results.csv").open()) if r["setting"] == "scratch")
    assert [row[f"users_seen{b}"] for b in ("0", "1-4", "5+")] == ["2", "1", "1"]
    # bucket 0: seed 0 hits user 0 only (HR 1/2), seed 1 user 3 only (1/2); 5+: seed 0 misses, seed 1 hits
    assert [float(row[f"hr@10_seen{b}"]) for b in ("0", "1-4", "5+")] == pytest.approx([0.5, 1.0, 0.5])
    assert float(row["ndcg@10_seen1-4"]) == pytest.approx(1 / math.log2(3), abs=1e-6)
    popularity = next(r for r in out["rows"] if r["setting"] == "popularity")
    assert popularity["users_seen0"] is None and popularity["hr@10_seen0"] is None
    md = out["markdown"]
    assert "| t1 | scratch | 2 / 1 / 1 | 0.5000 | 1.0000 | 0.5000 | 0.5000 | 0.6309 | 0.5000 |" in md
    assert "1 row(s) left out: evaluated before the split was kept" in md
    summary = json.loads((res / "report" / "summary.json").read_text())
    assert summary["cold_items"]["t1/scratch"]["1-4"] == {"users": 1, "hr@10": 1.0, "ndcg@10": pytest.approx(0.63093)}
    assert "t1/popularity" not in summary["cold_items"]


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

    gains = list(csv.DictReader((res / "report" / "gains.csv").open()))
    assert [(g["base"], float(g["target_share"])) for g in gains] == [("scratch", 1.0), ("popularity", 1.0),
                                                                       ("scratch", 0.5)]
    assert float(gains[0]["ndcg@10_gain"]) == pytest.approx(0.17 - 0.10)
    assert float(gains[0]["ndcg@10_gain_rel"]) == pytest.approx(0.7)
    assert float(gains[2]["ndcg@10_gain"]) == pytest.approx(0.12 - 0.06)
    # metrics files without run-info files (a folder from before per-user ranks were kept): no interval
    assert gains[0]["ndcg@10_low"] == "" and gains[0]["ndcg@10_within_noise"] == ""
    md = (res / "report" / "results.md").read_text()
    assert "| t1 | 100% | scratch | 0.2000 | 0.3200 | +0.1200 (+60%) [n/a]" in md
    assert "rerun its evaluate step for the interval" in md and "Cold items" not in md

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
    assert list(out["rows"][0])[4:10] == ["hr@10", "hr@10_std", "ndcg@10", "ndcg@10_std", "mrr", "mrr_std"]
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
    put_ranks(tmp_path / "results", "t1", "scratch", [10, 10, 0])
    put_ranks(tmp_path / "results", "t1", "finetune", [0, 0, 0])
    assert main(["report", "--params", str(tmp_path / "params.yaml")]) == 0
    assert "| mixed_target | finetune | 0.3000" in capsys.readouterr().out
    run_dir = next((tmp_path / "results" / "wandb" / "wandb").glob("offline-run-*"))
    back = read_offline_run(run_dir)
    assert back["group"] == "report-test" and back["job_type"] == "report"
    logged = {k: v for h in back["history"] for k, v in h.items()}
    assert logged["results/_type"] == "table-file" and logged["results/nrows"] == 4  # W&B flattens keys
    assert logged["scaling_source/nrows"] == 2 and logged["gains/nrows"] == 2
    assert logged["plots/bars_mixed_target/_type"] == "image-file"
    assert back["summary"]["mixed_target/finetune/ndcg@10"] == pytest.approx(0.16)
    # the gains with their intervals; none without per-user ranks (users 0 and 1 gain 1, user 2 nothing)
    assert back["summary"]["gain/mixed_target/finetune-scratch/ndcg@10_gain"] == pytest.approx(0.06)
    assert "gain/mixed_target/finetune-scratch/ndcg@10_low" not in back["summary"]
    assert back["summary"]["gain/t1/finetune-scratch/hr@10_gain"] == pytest.approx(2 / 3)
    assert back["summary"]["gain/t1/finetune-scratch/hr@10_low"] == pytest.approx(0.0)
    assert back["summary"]["gain/t1/finetune-scratch/hr@10_high"] == pytest.approx(1.0)


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


def test_a_run_that_ended_at_its_budget_still_improving_is_flagged(tmp_path):
    """The run-info file's training record (transrec.train.loop.stop_record) reaches the table, its note and
    summary.json: a point with a run still improving at its budget is marked, one stopped by patience is not."""
    res = tmp_path / "results"
    put(res, "t1", "scratch", 0.20, 0.10)
    put(res, "t1", "finetune", 0.30, 0.16)
    for name, record in (("scratch", {"stop_reason": "epoch budget", "still_improving": True, "best_share": 0.97}),
                         ("finetune", {"stop_reason": "patience", "still_improving": False, "best_share": 0.7})):
        path = res / "run_info" / "t1" / f"{name}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"training": record}))
    out = build(res, KS)
    text = (res / "report" / "results.md").read_text()
    assert "| t1 | scratch † |" in text and "| t1 | finetune |" in text
    assert "† not converged: 1 point(s) with a run that ended at its budget" in text and "(t1/scratch)" in text
    assert out["summary"]["not_converged"] == ["t1/scratch"]
    assert [r["not_converged"] for r in out["rows"]] == [1, 0]
