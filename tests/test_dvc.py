"""DVC for real: a local-folder remote round trip (repro, push, a fresh clone, pull, nothing left to do,
the same metrics), experiments (`dvc exp run -S`, `dvc exp show`) and `dvc metrics diff` after one param
changed, on a one-target tiny study (no source: data, cache, scratch, id, popularity, report)."""
from __future__ import annotations

import json

import pytest

from conftest import BIN, make_workdir, run, tiny_params

DVC = str(BIN / "dvc")
GIT = ["git", "-c", "user.name=transrec-test", "-c", "user.email=test@transrec.invalid"]


def _metrics(work) -> dict[str, dict]:
    shown = json.loads(run([DVC, "metrics", "show", "--json"], work).stdout)
    return {f: d["data"] for rev in shown.values() for f, d in rev["data"].items()}


def _tests(metrics: dict[str, dict]) -> dict[str, dict]:
    return {f: d["test"] for f, d in metrics.items()}  # wall time differs between runs


@pytest.mark.slow
def test_remote_round_trip_experiments_and_diff(tmp_path, tiny_bert_dir):
    params = tiny_params(tiny_bert_dir)
    params["platforms"] = {"tgt": params["platforms"]["tgt"]}
    params["study"]["source"] = None
    params["transfer"]["settings"] = ["scratch", "id"]
    work = make_workdir(tmp_path / "a", params, with_dvc=True)
    run([DVC, "remote", "add", "-d", "store", str(tmp_path / "remote")], work)
    run([DVC, "repro", "--quiet"], work, timeout=1200)
    run(GIT + ["add", "-A"], work)
    run(GIT + ["commit", "-qm", "baseline"], work)
    first = _metrics(work)
    assert set(first) == {"results/metrics/tgt/scratch.json", "results/metrics/tgt/id.json",
                          "results/metrics/tgt/popularity.json"}
    pushed = run([DVC, "push"], work).stdout
    assert "pushed" in pushed

    clone = tmp_path / "b"
    run(["git", "clone", "-q", str(work), str(clone)], tmp_path)
    run([DVC, "pull"], clone)
    assert (clone / "results/models/tgt/scratch/model/model.safetensors").is_file() and (clone / "data/cache/tgt").is_dir()
    status = run([DVC, "repro"], clone).stdout
    assert "Data and pipelines are up to date" in status, status
    assert _metrics(clone) == first

    # an experiment: one param changed, the training stages rerun, `dvc exp show` lists its metrics
    run([DVC, "exp", "run", "-S", "train.lr=0.004", "--name", "lr4e-3"], work, timeout=1200)
    shown = json.loads(run([DVC, "exp", "show", "--json"], work).stdout)
    exps = [e for rev in shown for e in (rev.get("experiments") or [])]
    found = {e["name"]: e for rev in shown for e in [rev, *[x["revs"][0] for x in rev.get("experiments") or []]]
             if e.get("name")}
    assert "lr4e-3" in found, [e.get("name") for e in exps]
    exp_metrics = found["lr4e-3"]["data"]["metrics"]
    lr_metrics = {f: d["data"]["test"] for f, d in exp_metrics.items()}
    assert lr_metrics["results/metrics/tgt/popularity.json"] == _tests(first)["results/metrics/tgt/popularity.json"]
    assert lr_metrics["results/metrics/tgt/scratch.json"] != _tests(first)["results/metrics/tgt/scratch.json"]
    assert found["lr4e-3"]["data"]["params"]["params.yaml"]["data"]["train"]["lr"] == 0.004

    # `dvc metrics diff`: the experiment applied to the workspace against the baseline commit
    run([DVC, "exp", "apply", "lr4e-3"], work)
    diff = json.loads(run([DVC, "metrics", "diff", "--json"], work).stdout)
    changed = {f for f, d in diff.items() if any(k.startswith("test.") for k in d)}
    assert "results/metrics/tgt/scratch.json" in changed and "results/metrics/tgt/popularity.json" not in changed
    text = run([DVC, "metrics", "diff"], work).stdout
    assert "test.ndcg@10" in text and "results/metrics/tgt/scratch.json" in text
