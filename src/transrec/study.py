"""The transfer study declared in params (`study`): which runs exist and what each one reads.

Snakemake (rule inputs, the final target) uses these functions; DVC declares the same runs with
`matrix` stages over the same params lists (tests/test_workflow.py checks that the two agree).
"""
from __future__ import annotations

from transrec import params as P
from transrec.errors import TransrecError


def source(params: dict) -> str:
    return params["study"]["source"]


def targets(params: dict) -> list[str]:
    return list(params["study"]["targets"])


def settings(params: dict) -> list[str]:
    return list(params["transfer"]["settings"])


def evaluations(params: dict) -> list[tuple[str, str]]:
    """(platform, setting) of every metrics file: targets x settings, popularity, the source model."""
    runs = [(t, s) for t in targets(params) for s in [*settings(params), "popularity"]]
    return runs + [(source(params), "pretrain")]


def check(params: dict) -> None:
    """The study names one source and declared targets, by their roles."""
    roles = {n: P.platform_config(params, n)["role"] for n in params["platforms"]}
    if roles.get(source(params)) != "source":
        raise TransrecError(f"params.yaml: study.source '{source(params)}' is not a platform with role: source")
    for name in targets(params):
        if roles.get(name) != "target":
            raise TransrecError(f"params.yaml: study.targets names '{name}', which is not a platform with role: target")


def processed_files(params: dict, platform: str) -> list[str]:
    root = f"{params['paths']['data']}/processed/{platform}"
    return [f"{root}/{name}" for name in ("split.parquet", "catalog.parquet", "text_ids.npy", "text_mask.npy",
                                          "images.npy")]


def cache_dir(params: dict, platform: str) -> str:
    return f"{params['paths']['data']}/cache/{platform}"


def model_file(params: dict, platform: str, setting: str) -> str:
    return f"{params['paths']['results']}/models/{platform}/{setting}/best.pt"


def transfer_inputs(params: dict, target: str) -> list[str]:
    """What a transfer run reads. Every setting declares the source checkpoint and the target's cache
    (scratch and id read neither): one declaration per run keeps Snakemake and DVC identical, at the cost
    of scratch/id waiting for pre-training."""
    return [*processed_files(params, target), cache_dir(params, target), model_file(params, source(params), "pretrain")]


def evaluate_inputs(params: dict, platform: str, setting: str) -> list[str]:
    if setting == "popularity":
        return processed_files(params, platform)
    return [*processed_files(params, platform), cache_dir(params, platform), model_file(params, platform, setting)]
