"""Shared fixtures: a copy of the workflow in a temp folder with a tiny params.yaml, so Snakemake and
DVC run the real rules and commands without touching the checkout."""
from __future__ import annotations

import copy
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
WORKFLOW_FILES = ("dvc.yaml", "workflow", "environment.yml")  # rules name environment.yml (conda:)


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory) -> Path:
    from transrec.tiny import tiny_bert

    return tiny_bert(tmp_path_factory.mktemp("tiny_bert") / "bert")


@pytest.fixture(scope="session")
def tiny_world_params(tmp_path_factory) -> dict:
    """Params of the processed tiny `src` and `tgt` platforms (transrec.tiny), built once per session."""
    from transrec.tiny import tiny_world

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    return tiny_world(tmp_path_factory.getbasetemp() / "tiny_world", base)


@pytest.fixture(scope="session")
def tiny_trained(tiny_world_params, tmp_path_factory) -> tuple[dict, list[str], Path]:
    """(params, ["--params", file], models folder): a model pre-trained on `src` and scratch and id models on
    `tgt`, one epoch each, no cache (catalogues go through the full encoders, as added items do), trained once
    for the modules that read them (test_recommend, test_model_folder). Tests change copies, never these."""
    from transrec.cli import main
    from transrec.tiny import with_results

    root = tmp_path_factory.mktemp("tiny_trained")
    params = with_results(tiny_world_params, root / "results", root / "params.yaml", train={"cache": False, "epochs": 1})
    p = ["--params", str(root / "params.yaml")]
    assert main(["pretrain", *p]) == 0
    for setting in ("scratch", "id"):
        assert main(["transfer", "tgt", setting, *p]) == 0
    return params, p, Path(params["paths"]["results"]) / "models"


def tiny_params(bert: Path, **overrides) -> dict:
    """The project's params shrunk to a tiny source `src` and target `tgt` (hidden 32, 2 layers, a tiny
    BERT, 16-px images, 2 epochs), with relative data/results folders so a work folder is self-contained."""
    from transrec.tiny import tiny_params as shrink

    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    scratch = Path(bert).parent / "params"
    params = shrink(scratch, base, bert)
    params["paths"] = {"data": "data", "results": "results"}
    for key, value in overrides.items():
        params[key] = copy.deepcopy(value)
    return params


def run(cmd: list[str], cwd: Path, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "WANDB_MODE": "offline",
           "WANDB_SILENT": "true"}
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def make_workdir(path: Path, params: dict, with_dvc: bool = False) -> Path:
    """A folder holding the workflow files, the package sources (rules depend on them) and params."""
    path.mkdir(parents=True, exist_ok=True)
    for name in WORKFLOW_FILES:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, path / name, symlinks=True)
        else:
            shutil.copy2(src, path / name)
    shutil.copytree(ROOT / "src" / "transrec", path / "src" / "transrec",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    if with_dvc:  # dvc.yaml is written from the job table for these params, as `make dvc` does
        run(["git", "init", "-q"], path)
        run([str(BIN / "dvc"), "init", "-q"], path)
        run([str(BIN / "transrec"), "dvc-yaml"], path)
    return path


