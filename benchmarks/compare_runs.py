"""Paired comparison of runs of one platform from different results folders (a script, not a test).

The report compares settings inside one study; this compares the same setting across studies that differ
in one choice (e.g. train.source_sampling, or pooled sources vs one), from each run's per-user test ranks
(its run-info file): the gain of OVER on BASE with the report's 95% paired bootstrap interval
(transrec.report.intervals), after checking that both ranked the same test users' same targets. Give a
side several times (replicates, e.g. seeds run into their own results folders): its value is their mean and
the interval resamples them too, as the report does for `@seed<n>` runs.

    python benchmarks/compare_runs.py --platform mixed_target \\
        --over runs/two_sources/results_balanced:finetune --base runs/two_sources/results:finetune
    (several --platform: one row each; --json out.json)
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from transrec.evaluate.metrics import per_user
from transrec.evaluate.per_user import read_ranks
from transrec.report.intervals import paired_bootstrap, within_noise

METRICS = ("ndcg@10", "hr@10")


def _side(spec: str, platform: str) -> tuple[str, np.ndarray]:
    """(targets digest, [1, users, metrics]) of RESULTS:RUN on `platform`."""
    results, _, run = spec.rpartition(":")
    path = Path(results) / "run_info" / platform / f"{run}.json"
    record = json.loads(path.read_text())["test_ranks"]
    ranks = read_ranks(record, str(path))
    return record["targets_sha256"], np.stack([per_user(ranks, m) for m in METRICS], axis=1)[None]


def compare(platform: str, over: list[str], base: list[str]) -> dict:
    sides = [_side(spec, platform) for spec in [*over, *base]]
    if len({digest for digest, _ in sides}) != 1:
        raise SystemExit(f"{platform}: {', '.join(over + base)} ranked different test targets; not comparable")
    a = np.concatenate([values for _, values in sides[:len(over)]])
    b = np.concatenate([values for _, values in sides[len(over):]])
    gain, low, high = paired_bootstrap(a, b)
    row = {"platform": platform, "over": over, "base": base, "users": int(a.shape[1])}
    for i, m in enumerate(METRICS):
        row.update({f"{m}_over": round(float(a[:, :, i].mean()), 4), f"{m}_base": round(float(b[:, :, i].mean()), 4),
                    f"{m}_gain": round(float(gain[i]), 4), f"{m}_low": round(float(low[i]), 4),
                    f"{m}_high": round(float(high[i]), 4), f"{m}_within_noise": within_noise(low[i], high[i])})
    return row


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--platform", action="append", required=True)
    ap.add_argument("--over", action="append", required=True, help="RESULTS_FOLDER:RUN (again: a replicate)")
    ap.add_argument("--base", action="append", required=True, help="RESULTS_FOLDER:RUN (again: a replicate)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    rows = [compare(p, args.over, args.base) for p in args.platform]
    print(f"over: {' + '.join(args.over)}\nbase: {' + '.join(args.base)}\n")
    print("| platform | users | NDCG@10 over | NDCG@10 base | gain [95% CI] | HR@10 gain [95% CI] |")
    print("|---|---:|---:|---:|---|---|")
    for r in rows:
        cells = [f"{r[f'{m}_gain']:+.4f} [{r[f'{m}_low']:+.4f}, {r[f'{m}_high']:+.4f}]"
                 + (" within noise" if r[f"{m}_within_noise"] else "") for m in METRICS]
        print(f"| {r['platform']} | {r['users']} | {r['ndcg@10_over']:.4f} | {r['ndcg@10_base']:.4f} | "
              f"{cells[0]} | {cells[1]} |")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
