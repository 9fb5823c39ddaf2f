"""Every DAG step's cost at three sizes of one Bili_2M-shaped platform (a benchmark script, not a test).

NineRec's Bili_2M: 2M users, ~144k items, ~25M interactions (mean history ~12). The synthetic platform
keeps that shape at each --sizes share (users, items and interactions all scale): half text, half image
items, histories uniform in [5, 19] (mean 12). Each size runs the real commands the DAG runs, one process
per step, in its own work folder under --out (params.yaml written there):

    transrec download|clean|resize|tokenize|split|cache bench     (download generates the platform)
    transrec pretrain                                             (--steps optimiser steps, sampled softmax
                                                                   with logQ, the CPU default item tower;
                                                                   ends with its full-ranking valid + test)
    transrec evaluate bench pretrain                              (valid + test, every user x every item)
    transrec export --model results/models/bench/pretrain --platform bench --k 100

Per step: wall s, peak RSS of the step's largest process (wait4), bytes the step wrote (the work
folder's growth), its work (input rows; optimiser steps; users x items ranked) and, from the previous
size, the growth exponent log(time ratio) / log(work ratio). A step given a --limit that it overruns is
stopped; its row is then marked `stopped` and projected from its own progress bar (never invented:
the projection is elapsed x total / done of the bar it was in). Results are appended to OUT/scale.json
as each step ends, so a long run can be read (`--table`) while it goes on.

    python benchmarks/scale.py --sizes 0.01,0.1 --out /work/scale_runs
    nohup python benchmarks/scale.py --sizes 1 --out /work/scale_runs --limit evaluate=900 &
    python benchmarks/scale.py --table --out /work/scale_runs --plot docs/figures/scale.png
"""
from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from data_throughput import machine, transrec_command  # noqa: E402

NAME = "bench"
# Bili_2M (NineRec): the 100% size
FULL = {"users": 2_000_000, "items": 144_000}
HISTORY = (5, 19)  # uniform: mean 12, as Bili's
DATA_STEPS = ("download", "clean", "resize", "tokenize", "split", "cache")
STEPS = (*DATA_STEPS, "pretrain", "evaluate", "export")
THREADS = {k: "1" for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "POLARS_MAX_THREADS")}


def write_params(work: Path, share: float, steps: int) -> None:
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["paths"] = {"data": "data", "results": "results"}
    params["platforms"] = {NAME: {"adapter": "synthetic", "role": "source", "synthetic": {
        "seed": 1, "n_users": round(FULL["users"] * share), "n_items": round(FULL["items"] * share),
        "text_fraction": 0.5, "history": list(HISTORY), "domain_shift": 0.0}}}
    # the reference's objective: sampled softmax over in-batch + 256 random negatives, logQ-corrected
    params["model"].update(loss="softmax", negatives="in_batch", n_negatives=256, logq=True)
    # a fixed budget of optimiser steps at every size (time per step is what must stay flat); one epoch
    # planned, so the plan itself does not walk 100 epochs of 2M users
    params["train"].update(max_steps=steps, epochs=1, min_steps=0, num_threads=1, device="cpu", loader_workers=0)
    params["train"]["pretrain"] = {"epochs": 1}
    params["wandb"]["mode"] = "disabled"
    params["study"].update(source=NAME, targets=[NAME])
    params["study"]["scaling"].update(target=NAME, source_fractions=[], target_fractions=[], seeds=[])
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def command(step: str) -> list[str]:
    if step == "pretrain":
        return ["pretrain", "--restart"]
    if step == "evaluate":
        return ["evaluate", NAME, "pretrain"]
    if step == "export":
        return ["export", "--model", f"results/models/{NAME}/pretrain", "--platform", NAME, "--k", "100"]
    return [step, NAME] + (["--workers", "1"] if step == "resize" else [])


def written_since(work: Path, since: int) -> int:
    """Bytes of the files under data/ and results/ (re)written since `since` (the step's outputs)."""
    total = 0
    for top in (work / "data", work / "results"):
        for p in top.rglob("*") if top.exists() else ():
            st = p.stat()
            if p.is_file() and st.st_mtime_ns >= since:
                total += st.st_size
    return total


BAR = re.compile(r"([^\r\n|]*?):\s+\d+%\|[^|]*\|\s*(\d+)/(\d+) \[(\d+:)?(\d+):(\d+)")


def bars(log_text: str) -> list[dict]:
    """Every tqdm bar of a log at the first moment it reached its furthest count (a later refresh of a
    finished bar, e.g. the steps' bar while the evaluation after them runs, adds time, not work):
    label, done, total, elapsed s, in order of appearance."""
    best: dict[str, dict] = {}
    for m in BAR.finditer(log_text):
        h = int(m.group(4)[:-1]) if m.group(4) else 0
        label, done = m.group(1).strip(), int(m.group(2))
        if label not in best or done > best[label]["done"]:
            best[label] = {"bar": label, "done": done, "total": int(m.group(3)),
                           "elapsed_s": h * 3600 + int(m.group(5)) * 60 + int(m.group(6))}
    return list(best.values())


def run_step(work: Path, step: str, limit: float | None) -> dict:
    """Wall s, peak RSS (largest process, MiB), bytes written; `stopped` with the progress where the limit hit."""
    log_path = work / "logs" / f"{step}.log"
    log_path.parent.mkdir(exist_ok=True)
    # files the previous step wrote have mtimes before `since`; the pause keeps the step's own after it
    # (file times come from a coarse kernel clock)
    since = time.time_ns()
    time.sleep(0.05)
    env = {**os.environ, **THREADS, "TQDM_MININTERVAL": "10", "WANDB_MODE": "disabled"}
    start = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(transrec_command() + command(step), cwd=work, stdout=log, stderr=log, env=env,
                                start_new_session=True)
        stopped = False
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if limit and time.perf_counter() - start > limit:
                os.killpg(proc.pid, signal.SIGTERM)
                stopped = True
                _, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.5)
    wall = time.perf_counter() - start
    code = os.waitstatus_to_exitcode(status)
    # CPU seconds of the step and its reaped workers: less sensitive than wall to a shared machine's load
    row = {"step": step, "wall_s": round(wall, 1), "cpu_s": round(usage.ru_utime + usage.ru_stime, 1),
           "peak_rss_mib": round(usage.ru_maxrss / 1024),
           "written_bytes": written_since(work, since),
           "exit": code, "stopped": stopped}
    if stopped:
        row["progress"] = bars(log_path.read_text(errors="replace"))
    elif code != 0:
        row["error"] = log_path.read_text(errors="replace").strip().splitlines()[-3:]
    return row


def work_of(work: Path, step: str) -> tuple[int, str]:
    """The step's own work: input rows (data steps), optimiser steps (pretrain), users x items (ranking)."""
    proc, raw = work / "data" / "processed" / NAME, work / "data" / "raw" / NAME

    def load(path: Path) -> dict:
        return json.loads(path.read_text())

    try:
        if step == "download":
            return load(raw / "manifest.json")["generated"]["interactions"], "interactions written"
        if step == "clean":
            return load(proc / "stats" / "clean.json")["interactions"]["read"], "interactions read"
        if step == "resize":
            return load(proc / "stats" / "resize.json")["requested"], "images"
        if step == "tokenize":
            return load(proc / "stats" / "tokenize.json")["items"], "texts"
        if step == "split":
            s = load(proc / "stats.json")["split"]
            return s["interactions"] + sum(s["dropped"].values()), "interactions"
        if step == "cache":
            return len(load(proc / "stats.json")["split"]["catalog"]) and sum(
                load(proc / "stats.json")["split"]["catalog"].values()), "items encoded"
        if step == "pretrain":
            return load(work / "results" / "models" / NAME / "pretrain" / "train_log.json")["steps"], "optimiser steps"
        s = load(proc / "stats.json")["split"]
        items = sum(v for k, v in s["catalog"].items() if k != "dropped")
        n = (2 if step == "evaluate" else 1) * s["users"] * items
        return n, "users x items" + (" (valid + test)" if step == "evaluate" else "")
    except (OSError, KeyError, ValueError):
        return 0, "?"


def train_rate(work: Path) -> dict:
    """Training alone (no evaluation) from train_log.json: s/step and sequences/s."""
    path = work / "results" / "models" / NAME / "pretrain" / "train_log.json"
    if not path.is_file():
        return {}
    log = json.loads(path.read_text())
    entries = log.get("evaluations") or []
    train_s = sum(e.get("train_s", 0) for e in entries)
    steps = log.get("steps", 0)
    return {"train_s": round(train_s, 1), "s_per_step": round(train_s / steps, 3) if steps and train_s else None}


def sizes_table(rows: list[dict]) -> str:
    by_share: dict[float, dict[str, dict]] = {}
    for r in rows:
        by_share.setdefault(r["share"], {})[r["step"]] = r
    shares = sorted(by_share)
    head = f"{'step':<9}" + "".join(f" | {f'{s * 100:g}%':>4} wall s  cpu s  RSS MiB  MiB out" for s in shares) \
        + " | exp. wall  exp. cpu  exp. RSS  work (largest size)"
    lines = [head, "-" * len(head)]
    for step in STEPS:
        cells, last = [], None
        for s in shares:
            r = by_share[s].get(step)
            if r is None:
                cells.append(f" | {'-':>11} {'-':>6} {'-':>8} {'-':>8}")
                continue
            wall = f"{r['wall_s']:,.0f}" + ("*" if r.get("stopped") else "" if r["exit"] == 0 else "!")
            cpu = f"{r['cpu_s']:,.0f}" if "cpu_s" in r else "-"
            cells.append(f" | {wall:>11} {cpu:>6} {r['peak_rss_mib']:>8,} {r['written_bytes'] / 2**20:>8,.0f}")
            last = r
        exp_w, exp_c, exp_m = exponents(by_share, shares, step)
        what = f"{last['work']:,} {last['unit']}" if last and last.get("work") else ""
        lines.append(f"{step:<9}" + "".join(cells) + f" | {exp_w:>9} {exp_c:>9} {exp_m:>9}  {what}")
    lines.append("*: stopped at its --limit (the wall is the time it ran; projections below); !: failed. "
                 "exp.: growth exponent from the previous size, log(ratio) / log(work ratio); pretrain: of its "
                 "s/step against the number of users")
    return "\n".join(lines)


def exponents(by_share: dict, shares: list[float], step: str) -> tuple[str, str, str]:
    """Growth from the second-largest to the largest size that both finished the step: wall and CPU time
    against the step's work (pretrain: s/step against users), peak RSS against the size."""
    done = [s for s in shares if step in by_share[s] and (by_share[s][step].get("exit") == 0 or (
        by_share[s][step].get("stopped") and (step == "pretrain" or projected_wall(by_share[s][step]))))]
    if len(done) < 2:
        return "-", "-", "-"
    a, b = by_share[done[-2]][step], by_share[done[-1]][step]
    size = math.log(done[-1] / done[-2])
    # a stopped step's peak is only what it reached: no memory exponent from it
    m = "-" if b.get("stopped") else f"{math.log(b['peak_rss_mib'] / a['peak_rss_mib']) / size:.2f}"
    if step == "pretrain":
        if not (a.get("s_per_step") and b.get("s_per_step")):
            return "-", "-", m
        return f"{math.log(b['s_per_step'] / a['s_per_step']) / size:.2f}", "-", m
    if b.get("stopped"):  # its projected wall against the work it would have done
        if not (a["work"] and b["work"]):
            return "-", "-", m
        return f"{math.log(projected_wall(b) / a['wall_s']) / math.log(b['work'] / a['work']):.2f}p", "-", m
    if not (a["work"] and b["work"]) or a["work"] == b["work"]:
        return "-", "-", m
    work = math.log(b["work"] / a["work"])
    cpu = f"{math.log(b['cpu_s'] / a['cpu_s']) / work:.2f}" if a.get("cpu_s") and b.get("cpu_s") else "-"
    return f"{math.log(b['wall_s'] / a['wall_s']) / work:.2f}", cpu, m


def projections(rows: list[dict]) -> str:
    out = []
    for r in rows:
        if r.get("stopped") and projected_wall(r):
            users = r.get("users", 0)
            out.append(f"{r['share'] * 100:g}% {r['step']}: whole step projected {projected_wall(r):,.0f} s "
                       f"({RANKINGS[r['step']] * users / projected_wall(r):,.0f} users/s, "
                       f"{r['work'] / projected_wall(r) / 1e6:,.1f} M user-item scores/s)")
        for p in (r.get("progress") or []) if r.get("stopped") else []:
            if p["done"]:
                proj = p["elapsed_s"] * p["total"] / p["done"]
                out.append(f"{r['share'] * 100:g}% {r['step']} (stopped after {r['wall_s']:,.0f} s): bar '{p['bar']}' "
                           f"{p['done']:,}/{p['total']:,} in {p['elapsed_s']:,} s, {p['done'] / max(p['elapsed_s'], 1):.3g}/s: "
                           f"the whole bar {proj:,.0f} s")
        if r["step"] == "pretrain" and r.get("s_per_step") and r.get("epoch_steps"):
            epoch_s = r["epoch_steps"] * r["s_per_step"]
            out.append(f"{r['share'] * 100:g}% pretrain: {r['s_per_step']} s/step, {1 / r['s_per_step']:.1f} steps/s, "
                       f"{r['batch_size'] / r['s_per_step']:.0f} sequences/s (over {r.get('steps_timed')} steps); "
                       f"one epoch = {r['epoch_steps']:,} steps = {epoch_s / 3600:,.2f} h")
            rank = one_ranking_s(rows, r["share"])
            if rank:
                epochs = yaml.safe_load((ROOT / "params.yaml").read_text())["train"]["pretrain"]["epochs"]
                total = epochs * (epoch_s + rank) + 2 * rank
                out.append(f"{r['share'] * 100:g}% pretrain, default budget ({epochs} epochs, a full validation "
                           f"ranking after each, {rank / 3600:.2f} h, and valid + test at the end): "
                           f"{total / 3600:,.1f} h ({epochs * epoch_s / total:.0%} of it steps)")
        if r["step"] in ("evaluate", "export") and not r.get("stopped") and r.get("exit") == 0:
            users = r["users"]
            per = 2 if r["step"] == "evaluate" else 1
            out.append(f"{r['share'] * 100:g}% {r['step']}: {per * users / r['wall_s']:,.0f} users/s "
                       f"({r['work'] / r['wall_s'] / 1e6:,.1f} M user-item scores/s)")
    return "\n".join(out)


RANKINGS = {"evaluate": 2, "export": 1}  # full rankings a step runs (evaluate: valid and test)


def projected_wall(r: dict) -> float | None:
    """A stopped ranking step's whole wall: the time before its ranking bar started, plus that bar's
    projection once per ranking the step runs (the work after the last ranking is not counted)."""
    found = [b for b in r.get("progress") or [] if b["bar"].startswith(("rank ", "export ")) and b["done"]]
    if r["step"] not in RANKINGS or not found:
        return None
    b = found[0]
    return r["wall_s"] - b["elapsed_s"] + RANKINGS[r["step"]] * b["elapsed_s"] * b["total"] / b["done"]


def one_ranking_s(rows: list[dict], share: float) -> float | None:
    """Seconds of one split's full ranking at a size: half a finished evaluate (valid + test, startup
    included), else the projection of the furthest ranking bar of a stopped evaluate or pretrain."""
    here = {r["step"]: r for r in rows if r["share"] == share}
    ev = here.get("evaluate")
    if ev and ev.get("exit") == 0 and not ev.get("stopped"):
        return ev["wall_s"] / 2
    found = [b for step in ("evaluate", "pretrain") for b in (here.get(step, {}).get("progress") or [])
             if b["bar"].startswith("rank ") and b["done"]]
    return max((b["elapsed_s"] * b["total"] / b["done"] for b in found), default=None)


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.5))
    for step in STEPS:
        pts = sorted(((r["share"], r) for r in rows if r["step"] == step and (r.get("exit") == 0 or r.get("stopped"))),
                     key=lambda p: p[0])
        if not pts:
            continue
        # a stopped ranking step: its projected wall (open marker); a stopped pretrain: the wall it ran
        walls = [projected_wall(r) or r["wall_s"] if r.get("stopped") else r["wall_s"] for _, r in pts]
        x = [FULL["users"] * s for s, _ in pts]
        line, = ax_t.plot(x, walls, "o-", label=step)
        ax_m.plot(x, [r["peak_rss_mib"] / 1024 for _, r in pts], "o-", label=step, color=line.get_color())
        for xi, wall, (_, r) in zip(x, walls, pts):
            if r.get("stopped"):
                ax_t.plot([xi], [wall], "o", mfc="white", color=line.get_color())
                ax_m.plot([xi], [r["peak_rss_mib"] / 1024], "o", mfc="white", color=line.get_color())
    for ax, label in ((ax_t, "wall s (open: stopped; ranking steps projected)"),
                      (ax_m, "peak RSS GiB (open: peak until stopped)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("users (items = 7.2% of users, 12 interactions a user)")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    ax_m.axhline(16, color="red", ls="--", lw=1, label="16 GiB")
    ax_t.legend(fontsize=8, ncol=2)
    fig.suptitle("transrec steps vs size (Bili_2M shape, one CPU thread each)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)


def run_size(out: Path, share: float, steps: int, limits: dict, only: set[str] | None, model_from: Path | None) -> None:
    work = out / f"size{share * 100:g}"
    work.mkdir(parents=True, exist_ok=True)
    write_params(work, share, steps)
    params = yaml.safe_load((work / "params.yaml").read_text())
    print(f"\n== {share * 100:g}%: {params['platforms'][NAME]['synthetic']['n_users']:,} users, "
          f"{params['platforms'][NAME]['synthetic']['n_items']:,} items; {work}", flush=True)
    model = work / "results" / "models" / NAME / "pretrain" / "model"
    for step in STEPS:
        if only and step not in only:
            continue
        borrowed = None
        if step in ("evaluate", "export") and not (model / "config.json").is_file() and model_from:
            # the ranking's cost does not depend on the weights: a same-architecture model of another size
            shutil.copytree(model_from, model, dirs_exist_ok=True)
            borrowed = str(model_from)
        row = {"share": share, **run_step(work, step, limits.get(step))}
        if borrowed:
            row["model_from"] = borrowed
        row["work"], row["unit"] = work_of(work, step)
        if step == "pretrain":
            row.update(train_rate(work), batch_size=params["train"]["batch_size"])
            # s/step from the steps' own bar at every size (also where the run was stopped in its evaluations
            # and train_log.json was never written): the same measure everywhere
            steps_bar = [b for b in bars((work / "logs" / "pretrain.log").read_text(errors="replace"))
                         if b["bar"].endswith(f"{NAME}/pretrain") and b["done"]]
            if steps_bar:
                b = steps_bar[-1]
                row.update(s_per_step=round(b["elapsed_s"] / b["done"], 3), steps_timed=b["done"])
            from transrec.data.platform import PlatformData
            from transrec.model.config import ModelConfig
            from transrec.train.data import Batches

            if row.get("s_per_step"):
                data = PlatformData(work / "data" / "processed" / NAME, NAME)
                cfg = ModelConfig.from_dict(params["model"], init_seed=0)
                row["epoch_steps"] = Batches(data, cfg, params["train"]["batch_size"], 0).steps_per_epoch(0)
        if step in ("evaluate", "export"):
            s = json.loads((work / "data" / "processed" / NAME / "stats.json").read_text())["split"]
            row["users"] = s["users"]
        with open(out / "scale.json", "a") as fh:
            fh.write(json.dumps(row) + "\n")
        flag = " STOPPED" if row["stopped"] else (f" FAILED {row.get('error')}" if row["exit"] else "")
        print(f"{step:<9} {row['wall_s']:>9,.1f} s {row['peak_rss_mib']:>7,} MiB {row['written_bytes'] / 2**20:>9,.1f} "
              f"MiB written  {row['work']:,} {row['unit']}{flag}", flush=True)
        if row["exit"] and not row["stopped"]:
            break


def read_rows(out: Path) -> list[dict]:
    path = out / "scale.json"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.is_file() else []
    latest = {(r["share"], r["step"]): r for r in rows}  # a rerun of a step replaces its row
    for r in latest.values():  # progress and s/step from the step's log, as the current bars() reads it
        log = out / f"size{r['share'] * 100:g}" / "logs" / f"{r['step']}.log"
        if not log.is_file():
            continue
        found = bars(log.read_text(errors="replace"))
        if r.get("stopped"):
            r["progress"] = found
        steps_bar = [b for b in found if b["bar"].endswith(f"{NAME}/pretrain") and b["done"]]
        if r["step"] == "pretrain" and steps_bar:
            r.update(s_per_step=round(steps_bar[-1]["elapsed_s"] / steps_bar[-1]["done"], 3),
                     steps_timed=steps_bar[-1]["done"])
            if not r.get("work"):  # stopped before train_log.json: the steps its bar counted
                r.update(work=steps_bar[-1]["done"], unit="optimiser steps")
    return list(latest.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.01,0.1,1", help="shares of Bili_2M (default 0.01,0.1,1)")
    parser.add_argument("--out", type=Path, default=Path("/tmp/transrec-scale"), help="work folders and scale.json")
    parser.add_argument("--steps", type=int, default=200, help="pre-training optimiser steps at every size")
    parser.add_argument("--limit", action="append", default=[], metavar="STEP=S",
                        help="stop STEP after S seconds and project it from its progress bar (repeatable)")
    parser.add_argument("--only", default="", help="comma-separated steps to run (default: all)")
    parser.add_argument("--model-from", type=Path, help="a pretrain model folder for evaluate/export when this "
                        "size's own pretrain was stopped before writing one (same model config)")
    parser.add_argument("--table", action="store_true", help="only print the table of OUT/scale.json")
    parser.add_argument("--plot", type=Path, help="also write the log-log PNG here")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    if not args.table:
        print(machine(), flush=True)
        limits = {k: float(v) for k, v in (item.split("=") for item in args.limit)}
        only = set(args.only.split(",")) if args.only else None
        for share in (float(s) for s in args.sizes.split(",")):
            run_size(args.out, share, args.steps, limits, only, args.model_from)
    rows = read_rows(args.out)
    print("\n" + sizes_table(rows))
    print("\n" + projections(rows))
    if args.plot:
        plot(rows, args.plot)
        print(f"\nplot -> {args.plot}")


if __name__ == "__main__":
    main()
