"""Throughput of the data steps on a large synthetic platform (a benchmark script, not a test).

Runs `transrec download|clean|resize|tokenize|split <platform>` one after another, each as its own
process in a temporary work folder, and prints per step: wall seconds (process start and imports
included), the work done and its rate (interactions/s, images/s or texts/s), and the peak resident
memory of the step (the largest single process: the step itself or one of its workers, from wait4).

    python benchmarks/data_throughput.py                        # 100k users, 20k items
    python benchmarks/data_throughput.py --users 20000 --items 5000
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
STEPS = ("download", "clean", "resize", "tokenize", "split")
NAME = "bench"


def machine() -> str:
    cpus = os.cpu_count() or 1
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus
    model, ram = platform.processor() or platform.machine(), "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        kib = next(int(row.split()[1]) for row in Path("/proc/meminfo").read_text().splitlines() if row.startswith("MemTotal"))
        ram = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration, ValueError):
        pass
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"machine: {model}, {usable} usable of {cpus} cores, {ram} RAM, load avg {load}; "
            f"Python {platform.python_version()} on {platform.system()}")


def write_params(work: Path, args) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    data = copy.deepcopy(params["data"])
    data["image"]["size"] = args.image_size
    params = {"seed": params.get("seed", 0), "paths": {"data": "data", "results": "results"}, "data": data,
              "synthetic_world": params.get("synthetic_world", {}),
              "platforms": {NAME: {"adapter": "synthetic", "role": "target", "synthetic": {
                  "seed": 1, "n_users": args.users, "n_items": args.items, "text_fraction": args.text_fraction,
                  "history": [args.min_history, args.max_history], "domain_shift": 0.0}}},
              # the learning sections as they are (validate checks a whole study): one target, no source
              **{k: params[k] for k in ("model", "train", "transfer", "evaluate", "wandb")},
              "study": {"source": None, "targets": [NAME], "scaling": {"target": NAME, "settings": [],
                                                                       "source_fractions": [], "target_fractions": [],
                                                                       "seeds": []}}}
    params["transfer"] = {**params["transfer"], "settings": ["scratch"]}
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def transrec_command() -> list[str]:
    exe = Path(sys.executable).parent / "transrec"
    return [str(exe)] if exe.is_file() else [sys.executable, "-m", "transrec.cli"]


def run_step(work: Path, step: str, workers: int, log) -> tuple[float, float]:
    """(wall seconds, peak RSS in MiB) of one `transrec <step>` process and its workers."""
    cmd = transrec_command() + ([step] if step == "validate" else [step, NAME])
    if step == "resize" and workers:
        cmd += ["--workers", str(workers)]
    env = {**os.environ, "TQDM_MININTERVAL": "5"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=work, stdout=log, stderr=log, env=env)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        log.flush()
        tail = Path(log.name).read_text(errors="replace").splitlines()[-5:]
        sys.exit(f"transrec {step} failed (exit {proc.returncode}):\n" + "\n".join(tail))
    # Linux reports ru_maxrss in KiB (macOS in bytes); wait4 covers the step and its reaped workers.
    peak = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    return wall, peak


def work_done(proc: Path, raw: Path, step: str) -> tuple[int, str, str]:
    """(count, unit, what) of one step, read from the step's own stats."""
    def load(path: Path) -> dict:
        return json.loads(path.read_text())

    if step == "download":
        gen = load(raw / "manifest.json")["generated"]
        return gen["interactions"], "rows/s", f"{gen['interactions']:,} interactions, {gen['items']:,} items rendered"
    if step == "clean":
        s = load(proc / "stats" / "clean.json")["interactions"]
        return s["read"], "rows/s", f"{s['read']:,} interactions read, {s['kept']:,} kept"
    if step == "resize":
        s = load(proc / "stats" / "resize.json")
        return s["requested"], "images/s", f"{s['requested']:,} images ({s['ok']:,} ok) at {s['size']}px"
    if step == "tokenize":
        s = load(proc / "stats" / "tokenize.json")
        return s["items"], "texts/s", f"{s['items']:,} texts, max_len {s['max_len']}"
    s = load(proc / "stats.json")
    n = s["split"]["interactions"] + sum(s["split"]["dropped"].values())
    return n, "rows/s", f"{n:,} interactions, {s['split']['users']:,} users"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--items", type=int, default=20_000)
    parser.add_argument("--image-size", type=int, default=64, help="resize target (default 64, as params.yaml)")
    parser.add_argument("--workers", type=int, default=0, help="resize processes (default: the step's own, CPUs max 8)")
    parser.add_argument("--text-fraction", type=float, default=0.5)
    parser.add_argument("--min-history", type=int, default=8)
    parser.add_argument("--max-history", type=int, default=30)
    parser.add_argument("--work-dir", type=Path, help="keep the platform here (default: a temp folder, removed)")
    args = parser.parse_args()

    work = args.work_dir or Path(tempfile.mkdtemp(prefix="transrec-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    write_params(work, args)
    proc, raw = work / "data" / "processed" / NAME, work / "data" / "raw" / NAME
    print(machine())
    print(f"platform: {args.users:,} users, {args.items:,} items, text fraction {args.text_fraction}, "
          f"history {args.min_history}-{args.max_history}, images {args.image_size}px; work dir {work}")
    print(flush=True)
    header = (f"{'step':<9} {'wall s':>7} {'net s':>6} {'rate (wall)':>12} {'rate (net)':>12} {'unit':<8} "
              f"{'peak RSS':>9}  work")
    print(header + "\n" + "-" * len(header), flush=True)
    total = 0.0
    try:
        with open(work / "bench.log", "w") as log:
            # the cost every step pays before any work: interpreter start, imports, params validation
            startup, peak = run_step(work, "validate", 0, log)
            print(f"{'startup':<9} {startup:>7.1f} {'':>6} {'':>12} {'':>12} {'':<8} {peak:>5,.0f} MiB  "
                  f"`transrec validate`: process start, imports, params check", flush=True)
            for step in STEPS:
                wall, peak = run_step(work, step, args.workers, log)
                n, unit, what = work_done(proc, raw, step)
                total += wall
                net = max(wall - startup, 1e-3)
                label = "generate" if step == "download" else step
                print(f"{label:<9} {wall:>7.1f} {net:>6.1f} {n / wall:>12,.0f} {n / net:>12,.0f} {unit:<8} "
                      f"{peak:>5,.0f} MiB  {what}", flush=True)
        print("-" * len(header))
        print(f"{'total':<9} {total:>7.1f}  (the five steps)")
        disk = sum(p.stat().st_size for p in proc.rglob("*") if p.is_file())
        print(f"\nprocessed folder: {disk / 2**20:,.1f} MiB. wall: the whole `transrec <step>` process; "
              f"net: wall minus startup; peak RSS: largest single process of the step (wait4 ru_maxrss)")
    finally:
        if args.work_dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
