"""The job table (transrec.jobs): exact inputs, params and code per job, dvc.yaml written from it, and the
project's own Snakefile running GPU jobs side by side and no pre-training for a run that needs none."""
from __future__ import annotations

import json
import os
import re
import shutil

import pytest
import yaml

from conftest import BIN, ROOT, make_workdir, run, tiny_params
from transrec import jobs
from transrec import params as P


def test_committed_dvc_yaml_is_the_job_tables():
    assert jobs.check_dvc_yaml(P.load(ROOT / "params.yaml"), ROOT / "dvc.yaml") is None


def test_a_stale_dvc_yaml_is_named_in_one_line(tmp_path):
    stale = tmp_path / "dvc.yaml"
    shutil.copy(ROOT / "dvc.yaml", stale)
    stale.write_text(stale.read_text().replace("transrec transfer mixed_target id\n", "transrec transfer mixed_target idx\n"))
    proc = run([str(BIN / "transrec"), "dvc-yaml", "--check", "--output", str(stale)], ROOT, check=False)
    assert proc.returncode == 2
    assert re.search(r"stale: .*dvc.yaml line \d+: has 'cmd: .*mixed_target idx', the job table writes "
                     r"'cmd: .*mixed_target id'", proc.stderr), proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_inputs_params_and_code_are_exact():
    from transrec.jobs import train_params

    params = P.load(ROOT / "params.yaml")
    model = "results/models/source/{}/model/model.safetensors"
    get = lambda run: jobs.job(params, "transfer", target="mixed_target", run=run)  # noqa: E731
    assert not any("models/" in i for i in get("scratch").inputs)          # no source checkpoint
    assert model.format("pretrain") in get("finetune").inputs
    assert model.format("pretrain@src0.1") in get("zero_shot@src0.1").inputs
    assert model.format("pretrain") in get("frozen@tgt0.3-seed1").inputs   # a target share: the full source model
    assert "data/cache/mixed_target" in get("scratch").inputs
    assert not any("cache" in i for i in get("id").inputs)                 # an ID model reads no encoder cache
    no_cache = {**params, "train": {**params["train"], "cache": False}}
    assert not any("cache" in i for i in jobs.job(no_cache, "transfer", target="mixed_target", run="scratch").inputs)
    learning = {"model", *train_params(params), "evaluate"}              # evaluate: the test metrics it writes
    assert set(get("id").params) == learning and "train.num_threads" not in learning
    assert model.format("pretrain") in get("lora").inputs and set(get("lora").params) == {
        *learning, "transfer.lora"}                                       # only lora runs depend on the adapters
    assert {"src/transrec/model", "src/transrec/evaluate"} <= set(get("id").code())
    assert "seed" in jobs.job(params, "clean", platform="source").params
    report = jobs.job(params, "report")
    n_runs = sum(j.step in ("pretrain", "transfer", "popularity") for j in jobs.jobs(params))  # evaluated runs
    # its metrics and run-info files, and the train logs of every run but popularity (one per target)
    assert report.code() == ["src/transrec/report"] and len(report.inputs) == 3 * n_runs - len(params["study"]["targets"])
    assert jobs.job(params, "pretrain", run="pretrain@src0.1").cmd.endswith("transrec pretrain --variant src0.1")
    exports = [j for j in jobs.jobs(params) if j.step == "export"]  # each target's finetune model, top-100
    assert len(exports) == len(params["study"]["targets"])
    export = jobs.job(params, "export", target="mixed_target")
    assert {f"results/models/mixed_target/finetune/model/{f}" for f in ("model.safetensors", "config.json")} <= set(export.inputs)
    assert "--model results/models/mixed_target/finetune/model " in export.cmd


@pytest.mark.parametrize("profile", sorted(p.name for p in (ROOT / "profiles").glob("*.yaml")))
def test_every_profile_has_a_job_table(profile):
    params = P.load(ROOT / "profiles" / profile)
    table = jobs.jobs(params)
    for j in table:  # every params key a job names exists (a missing one raises KeyError here)
        assert set(j.param_values(params)) == set(j.params), j.name
    assert len({j.name for j in table}) == len(table)


def test_training_threads_come_from_params():
    params = P.load(ROOT / "params.yaml")
    assert jobs.train_threads(params, gpus_present=0) is None              # CPU machine: the workflow's cores
    assert jobs.train_threads(params, gpus_present=4) == params["train"]["threads_per_gpu"] * params["train"]["gpus"]
    fixed = {**params, "train": {**params["train"], "num_threads": 3}}
    assert jobs.train_threads(fixed, gpus_present=4) == 3


def test_gpu_training_jobs_get_threads_per_gpu_not_all_cores(tmp_path, tiny_bert_dir):
    params = tiny_params(tiny_bert_dir)
    params["train"]["num_threads"] = 0
    work = make_workdir(tmp_path / "w", params)
    os.environ["TRANSREC_GPU_COUNT"] = "4"
    try:
        out = run([str(BIN / "snakemake"), "-n", "--cores", "16", "--resources", "gpu=4"], work).stdout
    finally:
        del os.environ["TRANSREC_GPU_COUNT"]
    blocks = [b for b in out.split("\nrule ") if b.startswith(("transfer:", "pretrain:"))]
    assert blocks and all(re.search(r"^    threads: 4$", b, flags=re.M) for b in blocks), out[-2000:]


def test_id_run_reads_no_source_model(tmp_path, tiny_bert_dir):
    work = make_workdir(tmp_path / "w", tiny_params(tiny_bert_dir))
    out = run([str(BIN / "snakemake"), "-n", "--cores", "1", "results/metrics/tgt/id.json"], work).stdout
    counts = dict(re.findall(r"^(\w+)\s+(\d+)$", out, flags=re.M))
    assert counts["transfer"] == "1" and "pretrain" not in counts and "cache" not in counts, out[-1500:]
    assert counts["download"] == "1"  # the target's data only


@pytest.mark.slow
def test_gpu_jobs_run_side_by_side_on_their_own_devices(tmp_path, tiny_bert_dir):
    """The project's Snakefile with a fake 4-GPU pool: training jobs overlap in time, each on its own
    device slot; the requested runs need no source model, so none is pre-trained."""
    params = tiny_params(tiny_bert_dir)
    params["train"]["epochs"] = 4
    work = make_workdir(tmp_path / "w", params)
    runs = ["id", "id@seed1", "scratch", "scratch@seed1"]
    os.environ["TRANSREC_GPU_COUNT"] = "4"
    try:
        run([str(BIN / "snakemake"), *[f"results/metrics/tgt/{r}.json" for r in runs],
             "--cores", "8", "--resources", "gpu=4"], work, timeout=1200)
    finally:
        del os.environ["TRANSREC_GPU_COUNT"]
    assert not (work / "results" / "models" / "src").exists()
    logs = {r: json.loads((work / "results/models/tgt" / r / "train_log.json").read_text()) for r in runs}
    spans = sorted((log["started_unix"], log["written_unix"], log["visible_devices"], r) for r, log in logs.items())
    overlapping = [(a, b) for i, a in enumerate(spans) for b in spans[i + 1:] if b[0] < a[1]]
    assert overlapping, spans
    assert all(a[2] != b[2] for a, b in overlapping), overlapping  # jobs running at once hold different slots
    assert {log["visible_devices"] for log in logs.values()} <= {"0", "1", "2", "3"}
    for r in runs:
        assert "gpu-run: CUDA_VISIBLE_DEVICES=" in (work / "logs/transfer/tgt" / f"{r}.log").read_text()
    assert yaml.safe_load((work / "params.yaml").read_text())["train"]["gpus"] == 1
