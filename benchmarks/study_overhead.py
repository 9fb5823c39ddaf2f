"""Wall time of a whole tiny study, old code vs new, side by side (a benchmark, not a test).

A tiny study is where the fixed cost of each job dominates: a source and 4 targets of a few dozen users
(the tests' tiny world: 2-layer BERT of width 32, 16-px images, 2 epochs), every setting of
transfer.settings on every target, with W&B offline as by default: ~60 Snakemake jobs, each a process
that imports torch, builds its model and opens a W&B run for a few seconds of work.

Each revision runs from its own git worktree (its own Snakefile and package, PYTHONPATH) with its own
params.yaml plus the same tiny overrides, from empty data and results folders (`snakemake --cores N`).
Runs alternate old, new[, new with its own recipe] for --pairs rounds; the medians and ratios are printed.

Same recipe: the revisions' defaults differ (e9f160c trained BCE against shared negatives on each user's
last max_len items; HEAD trains full cross-entropy on windows), so the new code runs with the old
recipe's keys pinned (`--pin`, below) for the code comparison, and with its own defaults as a third
column (`--recipe`): code share = old / new-pinned, recipe share = new-pinned / new-own.

    python benchmarks/study_overhead.py --old e9f160c --new HEAD --pairs 3 --recipe
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from transrec.tiny import tiny_bert

ROOT = Path(__file__).resolve().parents[1]

TARGETS = ("t1", "t2", "t3", "t4")
# The old default recipe, as the new code spells it (the old code has these as its only behaviour).
OLD_RECIPE = {("model", "loss"): "bce", ("model", "negatives"): "shared", ("model", "id"): {},
              ("train", "samples"): "last"}


def tiny_study(base: dict, root: Path, bert: Path, blocks: int) -> dict:
    p = json.loads(json.dumps(base))
    p["paths"] = {"data": str(root / "data"), "results": str(root / "results")}
    p["data"]["image"]["size"] = 16
    p["data"]["text"] = {"tokenizer": str(bert), "max_len": 12}
    p["data"]["filter"]["min_user_len"] = 5
    world = {"n_users": 40, "n_items": 40, "text_fraction": 0.5, "history": [5, 12], "domain_shift": 0.3}
    p["platforms"] = {"src": {"adapter": "synthetic", "role": "source",
                              "synthetic": {**world, "seed": 11, "n_users": 60, "n_items": 50, "domain_shift": 0.0}}}
    for i, name in enumerate(TARGETS):
        p["platforms"][name] = {"adapter": "synthetic", "role": "target", "synthetic": {**world, "seed": 12 + i}}
    p["model"].update({"d": 32, "n_negatives": 8})
    p["model"]["user_encoder"].update({"layers": 2, "heads": 2, "hidden": 32, "max_len": 8})
    p["model"]["text_encoder"].update({"name": str(bert), "trainable_blocks": blocks})
    p["model"]["image_encoder"].update({"trainable_blocks": blocks})
    p["train"].update({"batch_size": 16, "epochs": 2, "patience": 2, "warmup_steps": 0, "num_threads": 1,
                       "device": "cpu", "pretrain": {"epochs": 2}, "id": {"epochs": 2}})
    p["evaluate"]["chunk_users"] = 16
    p["study"] = {"source": "src", "targets": list(TARGETS),
                  "scaling": {"target": "t1", "settings": [], "source_fractions": [], "target_fractions": [], "seeds": []}}
    p["wandb"].update({"mode": "offline", "group": "study-overhead"})
    return p


def pin(p: dict, recipe: dict) -> dict:
    for path, value in recipe.items():
        inner = p
        for part in path[:-1]:
            inner = inner[part]
        inner[path[-1]] = value
    return p


def worktree(rev: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(where), rev], check=True,
                   capture_output=True)
    return where


def run_study(tree: Path, params: dict, work: Path, cores: int) -> float:
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    params["paths"] = {"data": str(work / "data"), "results": str(work / "results")}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    shutil.rmtree(tree / ".snakemake", ignore_errors=True)
    env = {**os.environ, "TRANSREC_PARAMS": str(work / "params.yaml"), "PYTHONPATH": str(tree / "src"),
           "TQDM_DISABLE": "1", "WANDB_MODE": "offline"}
    t = time.perf_counter()
    proc = subprocess.run(["snakemake", "--cores", str(cores)], cwd=tree, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"study_overhead: snakemake in {tree} failed:\n{proc.stderr[-3000:]}")
    return wall


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--old", default="e9f160c")
    ap.add_argument("--new", default="HEAD")
    ap.add_argument("--pairs", type=int, default=3)
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--blocks", type=int, default=0, help="trainable_blocks of both encoders (HEAD's default: 0)")
    ap.add_argument("--recipe", action="store_true", help="also run the new code with its own default recipe")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="study-overhead-"))
    bert = tiny_bert(tmp / "bert")
    trees = {"old": worktree(args.old, tmp / "old"), "new": worktree(args.new, tmp / "new")}
    base = {k: yaml.safe_load((t / "params.yaml").read_text()) for k, t in trees.items()}
    configs = {"old": ("old", tiny_study(base["old"], tmp, bert, args.blocks)),
               "new, old recipe": ("new", pin(tiny_study(base["new"], tmp, bert, args.blocks), OLD_RECIPE))}
    if args.recipe:
        configs["new, own recipe"] = ("new", tiny_study(base["new"], tmp, bert, args.blocks))
    print(f"load average at start: {os.getloadavg()[0]:.2f}; {len(TARGETS)} targets; --cores {args.cores}", flush=True)
    times: dict[str, list[float]] = {name: [] for name in configs}
    try:
        for i in range(args.pairs):
            for name, (tree, params) in configs.items():
                wall = run_study(trees[tree], json.loads(json.dumps(params)), tmp / "work", args.cores)
                times[name].append(wall)
                print(f"  round {i + 1}: {name:<16} {wall:7.1f} s", flush=True)
    finally:
        for tree in trees.values():
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)
    old = statistics.median(times["old"])
    print(f"\n{'configuration':<18} {'median s':>9} {'runs':>30} {'old / this':>11}")
    for name, values in times.items():
        med = statistics.median(values)
        print(f"{name:<18} {med:>9.1f} {', '.join(f'{v:.1f}' for v in values):>30} {old / med:>11.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"old": args.old, "new": args.new, "times": times}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
