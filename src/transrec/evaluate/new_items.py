"""Items that arrive after training, recommended through `add_items` alone: the experiment behind
benchmarks/new_items.py (which prints its figures; the test suite runs it on the tiny world).

On one target platform of a finished study: hold out a share of the items (seeded) in a copy of the
processed platform where they are dropped from the catalogue and from every training sequence (training
never sees them, not even as negatives); train the setting on that copy with the study's own code and
params; encode the held-out items with `add_items` from their raw files, no retraining; rank, for every
user whose test item is a held-out one, the catalogue plus the added items (history masked, ties
pessimistic), beside the study's own run (trained with them), popularity (ranks them last by
construction) and random ranking (HR@10 = 10 / rankable items).
"""
from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
import yaml

from transrec.cli import main as transrec_main
from transrec.evaluate.metrics import metrics_from_ranks
from transrec.paths import CATALOG, ITEMS, SPLIT, model_dir, processed_dir
from transrec.recommend import add_items, catalogue, load, scores_for
from transrec.train.loop import run
from transrec.train.settings import require_source, transfer_spec


def hold_out(proc: Path, out: Path, share: float, seed: int) -> list[str]:
    """Copy a processed platform to `out` with a share of its items dropped everywhere; their keys."""
    shutil.copytree(proc, out, dirs_exist_ok=True)
    catalog = pl.read_parquet(proc / CATALOG).sort("item")
    rankable = catalog.filter(pl.col("modality") != "dropped")["item"].to_numpy()
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(rankable, size=max(1, round(share * len(rankable))), replace=False))
    catalog.with_columns(pl.when(pl.col("item").is_in(held.tolist())).then(pl.lit("dropped"))
                         .otherwise(pl.col("modality")).alias("modality")).write_parquet(out / CATALOG)
    split = pl.read_parquet(proc / SPLIT)
    split.with_columns(pl.col("train").list.eval(pl.element().filter(~pl.element().is_in(held.tolist()))))\
        .write_parquet(out / SPLIT)
    return catalog.filter(pl.col("item").is_in(held.tolist()))["key"].to_list()


def rank_targets(net, cat, histories: list[list[int]], targets: list[int]) -> np.ndarray:
    """Pessimistic 0-based rank of each target among the rankable rows, its history masked."""
    ranks = []
    for history, target in zip(histories, targets):
        scores = scores_for(net, cat, history, [h for h in history if h != target])
        ranks.append(int((scores >= scores[target]).sum()) - 1)
    return np.array(ranks)


def users_of(proc: Path, held_keys: set[str]):
    """(history keys, test key) of every user whose test item is held out."""
    catalog = pl.read_parquet(proc / CATALOG).sort("item")
    keys = catalog["key"].to_list()
    split = pl.read_parquet(proc / SPLIT)
    out = []
    for train, valid, test in zip(split["train"].to_list(), split["valid"].to_list(), split["test"].to_list()):
        if keys[test] in held_keys:
            out.append(([keys[i] for i in [*train, valid]], keys[test]))
    return out


def held_out_experiment(params: dict, platform: str, setting: str, share: float, work: str | Path) -> dict:
    """The figures of one run of the experiment (work: its own data and results folders)."""
    proc = processed_dir(params, platform)
    study_model = model_dir(params, platform, setting)
    work = Path(work)
    copy = json.loads(json.dumps(params))
    copy["paths"] = {"data": str(work / "data"), "results": str(work / "results")}
    copy["wandb"]["mode"] = "disabled"
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(copy, sort_keys=False))
    held = hold_out(proc, work / "data" / "processed" / platform, share, params["seed"])
    t0 = time.time()
    if copy["train"]["cache"]:
        if transrec_main(["cache", platform, "--params", str(work / "params.yaml")]) != 0:
            raise RuntimeError(f"new items: caching {platform}'s copy failed (see above)")
    if setting == "finetune":  # start from the study's pre-trained source model
        source = require_source(params)
        shutil.copytree(model_dir(params, source, "pretrain"), model_dir(copy, source, "pretrain"), dirs_exist_ok=True)
    log = run(copy, transfer_spec(copy, platform, setting), restart=True, progress=False)
    train_s = time.time() - t0

    items = pl.read_parquet(proc / ITEMS).filter(pl.col("key").is_in(held))
    new_file = work / "held_out_items.parquet"
    items.select("key", "title", "text", "image", "modality").write_parquet(new_file)
    model = model_dir(copy, platform, setting)
    (model / "added").mkdir(exist_ok=True)
    (model / "added" / f"{platform}.parquet").unlink(missing_ok=True)
    t1 = time.time()
    added = add_items(copy, model, platform, new_file)
    add_s = time.time() - t1

    users = users_of(proc, set(held))
    figures = {"platform": platform, "setting": setting, "items": int(pl.read_parquet(proc / CATALOG).height),
               "held_out_items": len(held), "added": added["stored"], "users_with_held_out_test_item": len(users),
               "train_s": round(train_s, 1), "add_items_s": round(add_s, 2), "best_epoch": log["best_epoch"]}
    results = {}
    for name, (prm, mdl, added_file) in {
        "trained without them + add-items": (copy, model, model / "added" / f"{platform}.parquet"),
        "study run (trained with them)": (params, study_model, None),
    }.items():
        net, data, _ = load(prm, mdl, platform)
        cat = catalogue(net, data, added_file)
        hist = [cat.index(h) for h, _ in users]
        targets = cat.index([t for _, t in users])
        ranks = rank_targets(net, cat, hist, targets)
        m = metrics_from_ranks(torch.from_numpy(ranks), [10])
        results[name] = {"hr@10": round(m["hr@10"], 4), "ndcg@10": round(m["ndcg@10"], 4),
                         "mean_rank_share": round(float(np.mean(ranks)) / int(cat.rankable.sum()), 4),
                         "rankable": int(cat.rankable.sum())}
    results["popularity (no interactions: ranked last)"] = {"hr@10": 0.0, "ndcg@10": 0.0, "mean_rank_share": None}
    rankable = results["study run (trained with them)"]["rankable"]
    results["random"] = {"hr@10": round(10 / rankable, 4), "ndcg@10": None, "mean_rank_share": 0.5}
    figures["results"] = results
    return figures

