"""Item towers side by side on one platform: frozen heads, side adapters, the encoders' top block trained, ID.

Every row is the real command (`transrec cache`, `transrec transfer PLATFORM scratch[@seed<n>]`, or `id`)
on the same processed platform and split, with the profile's model and train sections and only the tower
changed; one thread per run, `--jobs` runs at once (so every row shares the same load). Per row and seed:
test HR@10 / NDCG@10, s/step (training time over training steps, from train_log.json), steps to the best
checkpoint, training seconds (all evaluations excluded), peak RSS of the process, trainable parameters.
Printed as a markdown table (mean ± std over seeds) and written to OUT/item_towers.json.

    python benchmarks/item_towers.py --params profiles/ml100k_peer.yaml --platform ml100k \\
        --towers heads,side,top,id --seeds 0,1,2 --top-steps 800 --out runs/item_towers
    python benchmarks/item_towers.py --out runs/item_towers --table | transrec readme-block item-towers --readme docs/results.md
    python benchmarks/item_towers.py --out runs/item_towers --towers heads,side,top --speed 5

Rows (--towers): heads (params as given: item_head over each encoder's last features), side
(model.item_tower: side), side_l1 / side_l3 (side reading only the top 1 / 3 states of each encoder),
side_cls / side_both (text states pooled by the first token / mean and first token), side_b64 / side_w128
/ side_d0 (adapters of bottleneck 64 / streams of width 128 / no adapter dropout), side_e100 (side with the
ID runs' budget of 100 epochs instead of 60), top (the top block
of each encoder trained, the reference's mechanism, at most --top-steps steps), id (SASRec-ID).
The study's outputs are written under OUT (default runs/item_towers), never the repo's results folder.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

from transrec import params as P

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FROZEN = {"text_encoder": {"trainable_blocks": 0}, "image_encoder": {"trainable_blocks": 0}}
TOWERS = {  # name -> (model overrides, train overrides, run setting)
    "heads": ({"item_tower": "heads", **FROZEN}, {}, "scratch"),
    "side": ({"item_tower": "side", **FROZEN}, {}, "scratch"),
    "side_l1": ({"item_tower": "side", "side": {"layers": 1}, **FROZEN}, {}, "scratch"),
    "side_l3": ({"item_tower": "side", "side": {"layers": 3}, **FROZEN}, {}, "scratch"),
    "side_cls": ({"item_tower": "side", "text_encoder": {"trainable_blocks": 0, "pooling": "cls"},
                  "image_encoder": {"trainable_blocks": 0}}, {}, "scratch"),
    "side_both": ({"item_tower": "side", "text_encoder": {"trainable_blocks": 0, "pooling": "both"},
                   "image_encoder": {"trainable_blocks": 0}}, {}, "scratch"),
    "side_b64": ({"item_tower": "side", "side": {"bottleneck": 64}, **FROZEN}, {}, "scratch"),
    "side_w128": ({"item_tower": "side", "side": {"width": 128, "bottleneck": 32}, **FROZEN}, {}, "scratch"),
    "side_d0": ({"item_tower": "side", "side": {"dropout": 0.0}, **FROZEN}, {}, "scratch"),
    "side_e100": ({"item_tower": "side", **FROZEN}, {"epochs": 100}, "scratch"),
    "top": ({"item_tower": "heads", "text_encoder": {"trainable_blocks": 1}, "image_encoder": {"trainable_blocks": 1}},
            {}, "scratch"),
    "id": ({}, {}, "id"),
}


def merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        out[key] = merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def sh(cmd: list[str], params: Path, log: Path) -> tuple[float, int]:
    """Run one transrec command; (wall seconds, peak RSS in bytes) of its process. A failure stops the study."""
    env = {**os.environ, "TRANSREC_PARAMS": str(params), "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1"}
    start = time.time()
    with open(log, "w") as fh:
        proc = subprocess.Popen([str(BIN / "transrec"), *cmd], stdout=fh, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: see {log}")
    return time.time() - start, usage.ru_maxrss * 1024


def row_stats(log: dict) -> dict:
    evals = log["evaluations"]
    steps = sum(e["steps"] for e in evals)
    train_s = sum(e["train_s"] for e in evals)
    to_best = sum(e["train_s"] for e in evals if e["step"] <= log["best_step"])
    return {"hr@10": log["test"]["hr@10"], "ndcg@10": log["test"]["ndcg@10"], "s_per_step": train_s / max(steps, 1),
            "steps": log["steps"], "best_step": log["best_step"], "train_s": train_s, "train_s_to_best": to_best,
            "trainable_parameters": log["trainable_parameters"], "stopped_early": log["stopped_early"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default="profiles/ml100k_peer.yaml")
    ap.add_argument("--platform", default="ml100k")
    ap.add_argument("--towers", default="heads,side,top,id")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--top-steps", type=int, default=800, help="step budget of the top-block rows (0 = the profile's)")
    ap.add_argument("--jobs", type=int, default=2, help="runs at once (one thread each)")
    ap.add_argument("--out", default="runs/item_towers")
    ap.add_argument("--table", action="store_true", help="only print the table of OUT/item_towers.json (no run)")
    ap.add_argument("--speed", type=int, default=0, metavar="ROUNDS",
                    help="only time training steps of the towers of a finished OUT in this process, alternating "
                         "towers for ROUNDS rounds of --speed-steps steps each (same batches; medians)")
    ap.add_argument("--speed-steps", type=int, default=20)
    args = ap.parse_args()
    out = Path(args.out).resolve()
    if args.speed:
        print(speed(out, args.platform, args.towers.split(","), args.speed, args.speed_steps))
        return
    if args.table:
        done = json.loads((out / "item_towers.json").read_text())
        args.params, args.platform, args.top_steps = done["params"], done["platform"], done["top_steps"]
        args.jobs = done.get("jobs", args.jobs)
        args.seeds = ",".join(str(s) for s in dict.fromkeys(r["seed"] for r in done["runs"]))
        print(table(done["runs"], args))
        return
    towers, seeds = args.towers.split(","), [int(s) for s in args.seeds.split(",")]
    base = P.read(ROOT / args.params)  # a profile merged onto the file it extends
    base["platforms"] = {args.platform: base["platforms"][args.platform]}
    loc = base["platforms"][args.platform].get("location", {})
    if loc.get("path") and not Path(loc["path"]).is_absolute():
        loc["path"] = str((ROOT / loc["path"]).resolve())
    base["study"] = {**base["study"], "source": None, "targets": [args.platform]}
    base["train"]["num_threads"] = 1
    base["wandb"]["mode"] = "disabled"

    # the data steps once, shared by every row (each row's folder links to the processed platform)
    shared = out / "data"
    data_params = out / "data.yaml"
    out.mkdir(parents=True, exist_ok=True)
    data_params.write_text(yaml.safe_dump(merge(base, {"paths": {"data": str(shared), "results": str(out / "x")}})))
    if not (shared / "processed" / args.platform / "split.parquet").is_file():
        for step in ("download", "clean", "resize", "tokenize", "split"):
            sh([step, args.platform], data_params, out / f"{step}.log")
    files = {}
    for tower in towers:
        model, train, _ = TOWERS[tower]
        if tower == "top" and args.top_steps:
            train = {**train, "max_steps": args.top_steps}
        folder = out / tower
        (folder / "data").mkdir(parents=True, exist_ok=True)
        if not (folder / "data" / "processed").exists():
            (folder / "data" / "processed").symlink_to(shared / "processed")
        files[tower] = folder / "params.yaml"
        files[tower].write_text(yaml.safe_dump(merge(base, {"model": model, "train": train, "paths": {
            "data": str(folder / "data"), "results": str(folder / "results")}}), sort_keys=False))
    cache = {}
    for tower in towers:
        if TOWERS[tower][2] != "id" and not (out / tower / "data" / "cache" / args.platform / "cache.json").is_file():
            wall, rss = sh(["cache", args.platform], files[tower], out / tower / "cache.log")
            cache[tower] = {"wall_s": round(wall, 1), "peak_rss": rss}
            print(f"cache {tower}: {wall:.1f} s, peak RSS {rss / 2**20:.0f} MiB", flush=True)

    def one(job: tuple[str, int]) -> dict:
        tower, seed = job
        setting = TOWERS[tower][2]
        run = setting + (f"@seed{seed}" if seed else "")
        folder = out / tower / "results" / "models" / args.platform / run
        done = out / tower / f"{run}.stats.json"  # a restarted study keeps what its finished runs measured
        if done.is_file():
            return json.loads(done.read_text())
        wall, rss = sh(["transfer", args.platform, run], files[tower], out / tower / f"{run}.log")
        stats = {"tower": tower, "seed": seed, "wall_s": wall, "peak_rss": rss,
                 **row_stats(json.loads((folder / "train_log.json").read_text()))}
        done.write_text(json.dumps(stats))
        print(json.dumps(stats), flush=True)
        return stats

    jobs = [(tower, seed) for seed in seeds for tower in towers]
    with ThreadPoolExecutor(args.jobs) as pool:
        results = list(pool.map(one, jobs))
    (out / "item_towers.json").write_text(json.dumps({"params": args.params, "platform": args.platform,
                                                     "top_steps": args.top_steps, "jobs": args.jobs, "cache": cache,
                                                     "runs": results}, indent=2))
    print(table(results, args))


def speed(out: Path, platform: str, towers: list[str], rounds: int, steps: int) -> str:
    """s/step of each tower on the same batches in one process (one thread), the towers alternating round by
    round, so machine load falls on all of them alike; the median over rounds, and the ratio to the first."""
    import torch

    from transrec.data.platform import PlatformData
    from transrec.model.build import build_model
    from transrec.train.data import Batches
    from transrec.train.optimizer import adamw

    torch.set_num_threads(1)
    runs = {}
    for tower in towers:
        params = yaml.safe_load((out / tower / "params.yaml").read_text())
        data = PlatformData(Path(params["paths"]["data"]) / "processed" / platform, platform)
        kind = "id" if TOWERS[tower][2] == "id" else "content"
        model = build_model(params, data, kind, "cpu", kind == "content", params["train"]["cache_dtype"])
        t = params["train"]
        optimizer = adamw(model.param_groups(t["lr"], t["encoder_lr"], t["weight_decay"]), torch.device("cpu"))
        batches = list(Batches(data, model.cfg, t["batch_size"], seed=0).epoch(0))
        runs[tower] = (model.train(), optimizer, batches, [])
    for warm in [True] + [False] * rounds:  # one untimed round first: lazy initialisation, caches
        for model, optimizer, batches, times in runs.values():
            start = time.perf_counter()
            for step in range(1 if warm else steps):
                model.calculate_loss(batches[step % len(batches)]).backward()
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            if not warm:
                times.append((time.perf_counter() - start) / steps)
    first = statistics.median(runs[towers[0]][3])
    lines = [f"s/step on {platform}, {rounds} alternating rounds of {steps} steps, one thread, load average "
             f"{os.getloadavg()[0]:.1f} at the end", "", f"| tower | s/step (median) | rounds | vs {towers[0]} |",
             "|---|---|---|---|"]
    for tower, (_, _, _, times) in runs.items():
        med = statistics.median(times)
        lines.append(f"| {tower} | {med:.4f} | {', '.join(f'{t:.3f}' for t in times)} | {med / first:.2f}x |")
    return "\n".join(lines)


def table(results: list[dict], args) -> str:
    def ms(values, fmt):
        if len(values) == 1:
            return format(values[0], fmt)
        return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt)}"

    lines = [f"{args.platform} ({args.params}), test, full ranking; mean ± std over seeds {args.seeds}; one thread per "
             f"run, {args.jobs} runs at once", "",
             "| tower | HR@10 | NDCG@10 | s/step | steps to best | steps | training s | peak RSS MiB | trainable "
             "parameters | runs stopped by patience |", "|---|---|---|---|---|---|---|---|---|---|"]
    for tower in dict.fromkeys(r["tower"] for r in results):
        rows = [r for r in results if r["tower"] == tower]

        def get(key: str, rows: list[dict] = rows) -> list:
            return [r[key] for r in rows]

        name = f"{tower} (at most {args.top_steps} steps)" if tower == "top" and args.top_steps else tower
        lines.append(f"| {name} | {ms(get('hr@10'), '.4f')} | {ms(get('ndcg@10'), '.4f')} | "
                     f"{ms(get('s_per_step'), '.4f')} | {ms(get('best_step'), '.0f')} | {ms(get('steps'), '.0f')} | "
                     f"{ms(get('train_s'), '.0f')} | {ms([v / 2**20 for v in get('peak_rss')], '.0f')} | "
                     f"{rows[0]['trainable_parameters']:,} | {sum(get('stopped_early'))} of {len(rows)} |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
