"""One configuration per invocation (issue 21): what Snakemake plans with (`--configfile`, `--config`,
TRANSREC_PARAMS) is what every command of the run reads."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from conftest import BIN, ROOT, make_workdir, run, tiny_params
from transrec import params as P
from transrec.errors import TransrecError

SNAKEMAKE = str(BIN / "snakemake")


def _metrics(work: Path, run_name: str = "scratch") -> dict:
    return json.loads((work / "results" / "metrics" / "tgt" / f"{run_name}.json").read_text())["test"]


@pytest.mark.slow
def test_a_configfile_replaces_params_yaml_for_every_command(tiny_bert_dir, tmp_path):
    """params.yaml in the folder is the embedded default (five synthetic platforms); `--configfile tiny.yaml`
    runs the tiny study alone: the commands read the tiny platforms (they used to read params.yaml and fail
    with "unknown platform"), and nothing of the default's platforms is made."""
    default = yaml.safe_load((ROOT / "params.yaml").read_text())
    work = make_workdir(tmp_path / "w", default)
    tiny = tiny_params(tiny_bert_dir)
    tiny["transfer"]["settings"] = ["scratch", "finetune"]
    (work / "tiny.yaml").write_text(yaml.safe_dump(tiny, sort_keys=False))
    run([SNAKEMAKE, "--cores", "2", "--quiet", "--configfile", "tiny.yaml"], work, timeout=900)
    assert sorted(p.name for p in (work / "data" / "raw").iterdir()) == ["src", "tgt"]
    assert {p.stem for p in (work / "results" / "metrics" / "tgt").iterdir()} == {"scratch", "finetune", "popularity"}
    assert (work / "results" / "recommendations" / "tgt" / "finetune.parquet").is_file()
    (resolved,) = (work / ".snakemake" / "transrec").glob("params-*.yaml")
    assert yaml.safe_load(resolved.read_text()) == tiny  # the file every job read
    log = json.loads((work / "results" / "models" / "tgt" / "scratch" / "train_log.json").read_text())
    assert log["platform"] == "tgt" and log["seed"] == tiny["train"]["seed"]


@pytest.mark.slow
def test_config_overrides_reach_the_training_run(tiny_bert_dir, tmp_path):
    """`--config train='{seed: 5}'` trains with seed 5: the metrics differ from the file's seed and equal a run
    whose file says seed 5."""
    tiny = tiny_params(tiny_bert_dir)
    target = "results/metrics/tgt/scratch.json"
    work = make_workdir(tmp_path / "cli", tiny)
    run([SNAKEMAKE, target, "--cores", "2", "--quiet"], work, timeout=600)
    default = _metrics(work)
    run([SNAKEMAKE, target, "--cores", "2", "--config", "train={seed: 5}", "--quiet"], work, timeout=600)
    overridden = _metrics(work)
    assert json.loads((work / "results/models/tgt/scratch/train_log.json").read_text())["seed"] == 5
    in_file = json.loads(json.dumps(tiny))
    in_file["train"]["seed"] = 5
    reference = make_workdir(tmp_path / "file", in_file)
    run([SNAKEMAKE, target, "--cores", "2", "--quiet"], reference, timeout=600)
    assert overridden == _metrics(reference) and overridden != default


def test_resolve_merges_in_order_types_nested_values_and_refuses_in_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(base))
    params, path = P.resolve("params.yaml", [], {})
    assert path == "params.yaml" and params == base  # nothing given: the file itself, nothing written
    (tmp_path / "a.yaml").write_text(yaml.safe_dump({**base, "seed": 3}))
    (tmp_path / "b.yaml").write_text(yaml.safe_dump({"train": {"epochs": 2}}))
    params, path = P.resolve("params.yaml", ["a.yaml", "b.yaml"], {"train": {"lr": "0.5", "cache": "false"}})
    assert params["seed"] == 3 and params["train"]["epochs"] == 2 and params["train"]["batch_size"] == base["train"]["batch_size"]
    assert params["train"]["lr"] == 0.5 and params["train"]["cache"] is False  # Snakemake hands nested values as strings
    assert yaml.safe_load(Path(path).read_text()) == params and Path(path).parent == Path(".snakemake", "transrec")
    assert P.resolve("params.yaml", ["a.yaml", "b.yaml"], {"train": {"lr": "0.5", "cache": "false"}})[1] == path
    with pytest.raises(TransrecError, match=r"params.yaml \+ --config train: unknown key 'train.sed' \(did you mean 'seed'"):
        P.resolve("params.yaml", [], {"train": {"sed": "5"}})
