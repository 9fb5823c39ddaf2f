"""The two front ends: Snakemake and DVC declare the same steps and build the same outputs."""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, make_workdir, run, tiny_params
from transrec import study

DATA_STEPS = ("download", "clean", "resize", "tokenize", "split")


def snakemake_jobs(workdir: Path) -> dict[str, dict]:
    """command -> {outs, deps} from Snakemake's own DAG (a forced dry run that prints each job)."""
    out = run([str(BIN / "snakemake"), "-n", "-p", "--forceall", "--cores", "1"], workdir).stdout
    jobs: dict[str, dict] = {}
    for block in out.split("\nrule ")[1:]:
        fields = dict(re.findall(r"^    (input|output): (.*)$", block, flags=re.M))
        shell = re.search(r"^Shell command: (.*)$", block, flags=re.M)
        if shell is None or shell.group(1).strip() == "None":
            continue  # the `all` target runs nothing
        cmd = re.sub(r"\s*>\s*\S+\s+2>&1\s*$", "", shell.group(1)).strip()
        split = lambda v: {p.strip() for p in v.split(",") if p.strip()}  # noqa: E731
        jobs[cmd] = {"outs": split(fields.get("output", "")), "deps": split(fields.get("input", ""))}
    return jobs


def dvc_stages(workdir: Path) -> dict[str, dict]:
    """command -> {outs, deps} from DVC's own resolution of dvc.yaml (foreach expanded)."""
    code = (
        "import json\n"
        "from dvc.repo import Repo\n"
        "repo = Repo('.')\n"
        "print(json.dumps({s.cmd: {'outs': [str(o.def_path) for o in s.outs],"
        " 'deps': [str(d.def_path) for d in s.deps if str(d.def_path) != 'params.yaml']}"
        " for s in repo.index.stages}))\n"
    )

    out = run([str(BIN / "python"), "-c", code], workdir).stdout
    return {cmd: {"outs": set(v["outs"]), "deps": set(v["deps"])} for cmd, v in json.loads(out).items()}


def test_dry_run_lists_every_data_step_for_every_platform(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    work = make_workdir(tmp_path / "w", params)
    out = run([str(BIN / "snakemake"), "-n", "--quiet", "rules"], work).stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    for step in DATA_STEPS:
        assert int(counts[step]) == len(params["platforms"]), (step, out)


def test_snakemake_and_dvc_declare_the_same_steps(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    work = make_workdir(tmp_path / "w", params, with_dvc=True)
    snake, dvc = snakemake_jobs(work), dvc_stages(work)
    assert set(snake) == set(dvc), set(snake) ^ set(dvc)
    for cmd in dvc:
        assert snake[cmd]["outs"] == dvc[cmd]["outs"], cmd
        # DVC declares the report's inputs as the metrics folder; Snakemake lists its files.
        folders = {d for d in dvc[cmd]["deps"] if not Path(d).suffix}
        snake_deps = {next((f for f in folders if d.startswith(f + "/")), d) for d in snake[cmd]["deps"]}
        assert snake_deps == dvc[cmd]["deps"], cmd
    for step in DATA_STEPS:
        for platform in params["platforms"]:
            assert f"transrec {step} {platform}" in dvc


def _digest(folder: Path) -> dict[str, str]:
    """Hashes of the processed outputs. items.parquet holds absolute image paths (different work
    folders), so its image column is compared relative to the work folder."""
    import polars as pl

    digests = {}
    for p in sorted(folder.rglob("*")):
        if p.name == "items.parquet":
            frame = pl.read_parquet(p).with_columns(pl.col("image").str.replace(str(folder.parents[1]), "", literal=True))
            digests[str(p.relative_to(folder))] = hashlib.sha256(frame.write_csv().encode()).hexdigest()
        elif p.is_file() and p.suffix in (".parquet", ".npy"):
            digests[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return digests


SCALED = ["finetune@src0.5", "finetune@src0.5-seed1", "scratch@tgt0.5", "scratch@tgt0.5-seed1", "scratch@seed1"]


@pytest.fixture(scope="module")
def front_ends(tmp_path_factory, tiny_bert_dir):
    """The whole tiny study run through Snakemake and through DVC, each in its own work folder (once, for the
    tests below)."""
    params = tiny_params(tiny_bert_dir)
    params["study"]["scaling"] = {"target": "tgt", "settings": ["scratch"], "source_fractions": [0.5],
                                  "target_fractions": [0.5], "seeds": [1]}
    root = tmp_path_factory.mktemp("front_ends")
    snake, dvc = make_workdir(root / "snake", params), make_workdir(root / "dvc", params, with_dvc=True)
    run([str(BIN / "snakemake"), "--cores", "2", "--quiet"], snake, timeout=2400)
    run([str(BIN / "dvc"), "repro", "--quiet"], dvc, timeout=2400)
    return params, snake, dvc


@pytest.mark.slow
def test_snakemake_and_dvc_build_the_same_outputs_and_rerun_nothing(front_ends):
    """The whole DAG on a tiny world, through both front ends: data, cache, pre-training, every transfer
    setting, the scaling and replicate runs, evaluation and the report; the same processed data and the
    same metrics from both."""
    params, snake, dvc = front_ends
    scaled = SCALED

    again = run([str(BIN / "snakemake"), "--cores", "2"], snake)
    assert "Nothing to be done" in again.stdout + again.stderr
    for platform in params["platforms"]:
        assert (snake / "logs" / "clean" / f"{platform}.log").is_file()

    again = run([str(BIN / "dvc"), "repro"], dvc)
    assert "Data and pipelines are up to date" in again.stdout
    shown = json.loads(run([str(BIN / "dvc"), "metrics", "show", "--json"], dvc).stdout)
    files = {f: d["data"] for rev in shown.values() for f, d in rev["data"].items()}
    assert set(files) == {f"results/metrics/{p}/{r}.json" for p, r in study.evaluations(params)}
    # a results table: one row per run, the same few numeric columns (test/valid HR, NDCG, MRR, wall time)
    columns = {f"{k}.{m}" if isinstance(v, dict) else k for d in files.values() for k, v in d.items()
               for m in (v if isinstance(v, dict) else [None])}
    assert len(columns) <= 20 and all(isinstance(x, (int, float)) for d in files.values()
                                      for v in d.values() for x in (v.values() if isinstance(v, dict) else [v]))
    header = run([str(BIN / "dvc"), "metrics", "show"], dvc).stdout.splitlines()[0].split()
    assert header[0] == "Path" and len(header) == 1 + len(columns), header
    plots = json.loads(run([str(BIN / "dvc"), "plots", "show", "--json"], dvc).stdout)["data"]
    assert {"results/report/curves_source.csv", "results/report/curves_target.csv"} <= set(plots)

    a, b = _digest(snake / "data" / "processed"), _digest(dvc / "data" / "processed")
    assert a and a == b
    for platform in params["platforms"]:
        sa = yaml.safe_load((snake / "data/processed" / platform / "stats.json").read_text())
        sb = yaml.safe_load((dvc / "data/processed" / platform / "stats.json").read_text())
        sa["clean"].pop("source"), sb["clean"].pop("source")
        assert sa == sb

    # Learning half: metrics for every target x setting (+ popularity) and the source model, the same
    # numbers from both front ends (CPU training is deterministic), and a report that shows them.
    import csv

    settings = params["transfer"]["settings"]
    for work in (snake, dvc):
        for setting in [*settings, "popularity", *scaled]:
            doc = json.loads((work / "results/metrics/tgt" / f"{setting}.json").read_text())
            info = json.loads((work / "results/run_info/tgt" / f"{setting}.json").read_text())
            assert 0.0 <= doc["test"]["hr@10"] <= 1.0 and info["counts"]["users"] > 0
        assert (work / "results/metrics/src/pretrain.json").is_file()
        assert (work / "results/metrics/src/pretrain@src0.5.json").is_file()
        curve = list(csv.DictReader((work / "results/report/curves_target.csv").open()))
        assert [float(r["fraction"]) for r in curve] == [0.5, 1.0]
        tgt_half = [json.loads((work / "results/metrics/tgt" / f"scratch@tgt0.5{s}.json").read_text())["test"]["ndcg@10"]
                    for s in ("", "-seed1")]
        assert float(curve[0]["scratch"]) == pytest.approx(sum(tgt_half) / 2, abs=1e-6)  # mean over replicates
        assert (work / "results/report/plots/scaling_source.png").is_file()
        rows = {(r["platform"], r["setting"]): r for r in csv.DictReader((work / "results/report/results.csv").open())}
        for setting in [*settings, "popularity"]:  # a row is the mean over the main run and its replicates
            files = [work / "results/metrics/tgt" / f"{setting}{v}.json" for v in ("", "@seed1")]
            values = [json.loads(f.read_text())["test"]["ndcg@10"] for f in files if f.is_file()]
            assert float(rows[("tgt", setting)]["ndcg@10"]) == pytest.approx(sum(values) / len(values))
            assert int(rows[("tgt", setting)]["seeds"]) == len(values) == (2 if setting == "scratch" else 1)
        assert (work / "results/report/plots/bars_tgt.png").is_file()
        # every gain has its paired interval (scratch over its two seeds), every run its cold-item split
        gains = {g["base"]: g for g in csv.DictReader((work / "results/report/gains.csv").open())
                 if float(g["target_share"]) == 1.0}
        assert {"scratch", "id", "popularity"} <= set(gains) and gains["scratch"]["seeds_base"] == "2"
        for g in gains.values():
            assert float(g["ndcg@10_low"]) <= float(g["ndcg@10_high"])
            assert g["ndcg@10_within_noise"] == str(float(g["ndcg@10_low"]) <= 0 <= float(g["ndcg@10_high"]))
        for setting in [*settings, "popularity", *scaled]:
            info = json.loads((work / "results/run_info/tgt" / f"{setting}.json").read_text())
            assert sum(b["users"] for b in info["cold_items"].values()) == info["counts"]["users"]
    for setting in [*settings, "popularity", *scaled]:
        ma = json.loads((snake / "results/metrics/tgt" / f"{setting}.json").read_text())["test"]
        mb = json.loads((dvc / "results/metrics/tgt" / f"{setting}.json").read_text())["test"]
        assert ma == pytest.approx(mb, abs=1e-6), setting


def test_params_typo_stops_snakemake_before_any_work(tmp_path, tiny_bert_dir):
    params = tiny_params(tiny_bert_dir)
    params["data"]["fitler"] = params["data"].pop("filter")
    work = make_workdir(tmp_path / "w", params)
    proc = run([str(BIN / "snakemake"), "--cores", "1"], work, check=False)
    assert proc.returncode != 0
    assert "unknown key 'data.fitler' (did you mean 'filter'?)" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (work / "data").exists()


def test_snakefile_is_lint_clean(tmp_path):
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    out = run([str(BIN / "snakemake"), "--lint"], make_workdir(tmp_path / "w", params))
    assert "Congratulations, your workflow is in a good condition" in out.stdout + out.stderr


@pytest.mark.slow
def test_report_and_dvc_plots_render_in_a_real_browser(front_ends, tmp_path):
    """Headless chromium opens results/report.html (`snakemake --report`) and the `dvc plots show` page:
    no JavaScript error, one entry per plot in the report's Plots category with the image decoded, every
    DVC plot rendered as a chart. Screenshots go to $TRANSREC_SCREENSHOTS (default: the test's tmp folder)."""
    from browser import chrome, js_errors, vega_scripts

    params, snake, dvc = front_ends
    shots = Path(os.environ.get("TRANSREC_SCREENSHOTS", tmp_path))
    shots.mkdir(parents=True, exist_ok=True)
    run([str(BIN / "snakemake"), "--cores", "1", "--report", "results/report.html"], snake)
    pngs = sorted((snake / "results/report/plots").glob("*.png"))
    with chrome() as driver:
        from selenium.webdriver.common.by import By

        driver.get((snake / "results/report.html").as_uri())
        driver.find_element(By.XPATH, "//a[normalize-space()='Plots']").click()
        rows = driver.find_elements(By.CSS_SELECTOR, "table tr")[1:]
        assert sorted(r.text.strip() for r in rows) == sorted(f"results/report/plots/{p.name}" for p in pngs)
        heat = next(r for r in rows if r.text.strip().endswith("heatmap.png"))
        heat.find_elements(By.TAG_NAME, "a")[0].click()
        shown = [i for i in driver.find_elements(By.TAG_NAME, "img") if "image/png" in (i.get_attribute("src") or "")]
        assert shown and int(shown[0].get_attribute("naturalWidth")) > 100  # the PNG decoded
        driver.save_screenshot(str(shots / "report_html.png"))
        assert js_errors(driver) == []

        template = vega_scripts(tmp_path / "plots")  # vega from the npm registry: the page works offline
        run([str(BIN / "dvc"), "plots", "show", "--html-template", str(template), "-o", str(tmp_path / "plots")], dvc)
        driver.get((tmp_path / "plots" / "index.html").as_uri())
        charts = driver.find_elements(By.CSS_SELECTOR, ".vega-embed")
        assert len(charts) == 2 and all(c.find_elements(By.CSS_SELECTOR, "svg, canvas") for c in charts)
        driver.save_screenshot(str(shots / "dvc_plots.png"))
        assert js_errors(driver) == []
