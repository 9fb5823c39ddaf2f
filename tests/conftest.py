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
WORKFLOW_FILES = ("Snakefile", "dvc.yaml", "workflow")


def tiny_params(**overrides) -> dict:
    """The default params shrunk to two tiny synthetic platforms (a source and a target)."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["data"]["image"]["size"] = 16
    params["data"]["filter"]["min_user_len"] = 3
    params["platforms"] = {
        "src": {"adapter": "synthetic", "role": "source",
                "synthetic": {"seed": 1, "n_users": 40, "n_items": 30, "text_fraction": 0.5,
                              "history": [4, 8], "domain_shift": 0.0}},
        "tgt": {"adapter": "synthetic", "role": "target",
                "synthetic": {"seed": 2, "n_users": 30, "n_items": 20, "text_fraction": 0.5,
                              "history": [4, 8], "domain_shift": 0.0}},
    }
    params["study"] = {"source": "src", "targets": ["tgt"]}
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
    if with_dvc:
        run(["git", "init", "-q"], path)
        run([str(BIN / "dvc"), "init", "-q"], path)
    return path


@pytest.fixture
def tiny_workdir(tmp_path: Path):
    def factory(name: str = "work", with_dvc: bool = False, **overrides) -> Path:
        return make_workdir(tmp_path / name, tiny_params(**overrides), with_dvc=with_dvc)

    return factory
