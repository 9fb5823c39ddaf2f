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
import sys
from pathlib import Path

from transrec import params as P
from transrec.evaluate.new_items import held_out_experiment


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
    work = Path(args.work or Path(params["paths"]["results"]) / "new_items" / platform)
    figures = held_out_experiment(params, platform, args.setting, args.share, work)
    held, users, results = figures["held_out_items"], figures["users_with_held_out_test_item"], figures["results"]
    print(f"{platform}/{args.setting}: {held} of {figures['items']} items held out ({args.share:g}); {users} users' "
          f"test item is one of them; training {figures['train_s']:.0f} s, add-items {figures['add_items_s']:.1f} s")
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
