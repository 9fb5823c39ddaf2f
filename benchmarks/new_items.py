"""Items that arrive after training: recommended through `add-items` alone (an experiment that prints figures).

On one target platform of a finished study (default: params.yaml, mixed_target, finetune):
  1. hold out a share of the items (default 10%, seeded): a copy of the processed platform where they
     are dropped from the catalogue and from every training sequence, so training never sees them,
     not even as negatives;
  2. train the setting on that copy (`transrec.train.loop.run`, the study's own code and params);
  3. `transrec.recommend.add_items` encodes the held-out items from their raw text/image files, as new
     items, with no retraining;
  4. rank, for every user whose test item is a held-out one, the whole catalogue plus the added items
     (history masked, ties pessimistic), and report HR@10 / NDCG@10 on those users, next to:
       - the study's own run of the same setting, which trained with those items (an upper reference);
       - popularity: held-out items have no interactions, so it ranks them last (HR = 0 by construction);
       - random ranking: HR@10 = 10 / rankable items, mean rank half the catalogue.
   The mean rank (as a share of the rankable items) says whether held-out items are merely not at the
   top or pushed below the trained ones.

    python benchmarks/new_items.py                        # in the folder of a finished `make run`
    python benchmarks/new_items.py --platform text_target --setting scratch --share 0.2 --json out.json
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
import yaml

from transrec import params as P
from transrec.cli import main as transrec_main
from transrec.evaluate.metrics import metrics_from_ranks
from transrec.paths import model_dir, processed_dir
from transrec.recommend import add_items, catalogue, load, scores_for
from transrec.train.loop import run
from transrec.train.settings import source_platform, transfer_spec


def hold_out(proc: Path, out: Path, share: float, seed: int) -> list[str]:
    """Copy a processed platform to `out` with a share of its items dropped everywhere; their keys."""
    shutil.copytree(proc, out, dirs_exist_ok=True)
    catalog = pl.read_parquet(proc / "catalog.parquet").sort("item")
    rankable = catalog.filter(pl.col("modality") != "dropped")["item"].to_numpy()
    rng = np.random.default_rng(seed)
    held = np.sort(rng.choice(rankable, size=max(1, round(share * len(rankable))), replace=False))
    catalog.with_columns(pl.when(pl.col("item").is_in(held.tolist())).then(pl.lit("dropped"))
                         .otherwise(pl.col("modality")).alias("modality")).write_parquet(out / "catalog.parquet")
    split = pl.read_parquet(proc / "split.parquet")
    split.with_columns(pl.col("train").list.eval(pl.element().filter(~pl.element().is_in(held.tolist()))))\
        .write_parquet(out / "split.parquet")
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
    catalog = pl.read_parquet(proc / "catalog.parquet").sort("item")
    keys = catalog["key"].to_list()
    split = pl.read_parquet(proc / "split.parquet")
    out = []
    for train, valid, test in zip(split["train"].to_list(), split["valid"].to_list(), split["test"].to_list()):
        if keys[test] in held_keys:
            out.append(([keys[i] for i in [*train, valid]], keys[test]))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--params", default="params.yaml")
    ap.add_argument("--platform", default=None, help="default: study.scaling.target")
    ap.add_argument("--setting", default="finetune", choices=("scratch", "finetune"))
    ap.add_argument("--share", type=float, default=0.1, help="share of the items held out")
    ap.add_argument("--work", default=None, help="work folder (default: <results>/new_items)")
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    params = P.load(args.params)
    platform = args.platform or params["study"]["scaling"]["target"]
    proc = processed_dir(params, platform)
    study_model = model_dir(params, platform, args.setting)
    work = Path(args.work or Path(params["paths"]["results"]) / "new_items" / platform)
    copy = json.loads(json.dumps(params))
    copy["paths"] = {"data": str(work / "data"), "results": str(work / "results")}
    copy["wandb"]["mode"] = "disabled"
    work.mkdir(parents=True, exist_ok=True)
    (work / "params.yaml").write_text(yaml.safe_dump(copy, sort_keys=False))
    held = hold_out(proc, work / "data" / "processed" / platform, args.share, params["seed"])
    t0 = time.time()
    if copy["train"]["cache"]:
        assert transrec_main(["cache", platform, "--params", str(work / "params.yaml")]) == 0
    if args.setting == "finetune":  # start from the study's pre-trained source model
        source = source_platform(params)
        shutil.copytree(model_dir(params, source, "pretrain"), model_dir(copy, source, "pretrain"), dirs_exist_ok=True)
    log = run(copy, transfer_spec(copy, platform, args.setting), restart=True, progress=False)
    train_s = time.time() - t0

    items = pl.read_parquet(proc / "items.parquet").filter(pl.col("key").is_in(held))
    new_file = work / "held_out_items.parquet"
    items.select("key", "title", "text", "image", "modality").write_parquet(new_file)
    model = model_dir(copy, platform, args.setting)
    (model / "added").mkdir(exist_ok=True)
    (model / "added" / f"{platform}.parquet").unlink(missing_ok=True)
    t1 = time.time()
    added = add_items(copy, model, platform, new_file)
    add_s = time.time() - t1

    users = users_of(proc, set(held))
    figures = {"platform": platform, "setting": args.setting, "items": int(pl.read_parquet(proc / "catalog.parquet").height),
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

    print(f"{platform}/{args.setting}: {len(held)} of {figures['items']} items held out ({args.share:g}); "
          f"{len(users)} users' test item is one of them; training {train_s:.0f} s, add-items {add_s:.1f} s")
    print("| ranker | HR@10 | NDCG@10 | mean rank / rankable items |\n|---|---|---|---|")
    for name, r in results.items():
        ndcg = "" if r["ndcg@10"] is None else f"{r['ndcg@10']:.4f}"
        share = "" if r["mean_rank_share"] is None else f"{r['mean_rank_share']:.3f}"
        print(f"| {name} | {r['hr@10']:.4f} | {ndcg} | {share} |")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
