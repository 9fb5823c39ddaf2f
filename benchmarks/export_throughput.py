"""Top-K export throughput vs catalogue size: users/s of `transrec export` (a benchmark, not a test).

For each catalogue size (default 1k, 10k, 100k items) a scratch folder gets one synthetic text-only
platform (params.yaml's generator: --users users, histories of 5..30) through the real data steps
(download, clean, resize, tokenize, split), a SASRec-ID model trained for a few steps (`transrec transfer
bench id`; its quality does not matter for speed), and then `transrec.export.export` is timed in this
process: every user's top-K over the whole catalogue, own items excluded, chunks of evaluate.chunk_users,
part files streamed into one parquet. The ID model's catalogue vectors are its table, so the figure is
the export itself (histories, user encoder, scores, top-K, parquet); a content model adds one catalogue
encoding first, which benchmarks/eval_scaling.py measures.

Printed per size: the items actually ranked (an item no user meets never enters the catalogue, so at
10,000 users a 100k-item generator yields ~45k; give more --users for a fuller catalogue), export wall
seconds, users/s, rows written, the output's size and the peak RSS of the export phase (Linux clear_refs
/ VmHWM).

    python benchmarks/export_throughput.py                         # 1k, 10k, 100k items, 10,000 users
    python benchmarks/export_throughput.py --items 1000,10000 --users 2000 --k 100
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import machine, peak_mib, reset_peak  # noqa: E402


def bench_params(base: dict, root: Path, n_items: int, n_users: int) -> dict:
    p = json.loads(json.dumps(base))
    p["paths"] = {"data": str(root / "data"), "results": str(root / "results")}
    p["platforms"] = {"bench": {"adapter": "synthetic", "role": "target",
                                "synthetic": {"seed": 1, "n_users": n_users, "n_items": n_items, "text_fraction": 1.0,
                                              "history": [5, 30], "domain_shift": 0.0}}}
    p["study"] = {"source": None, "targets": ["bench"],
                  "scaling": {"target": "bench", "settings": [], "source_fractions": [], "target_fractions": [],
                              "seeds": []}}
    p["transfer"]["settings"] = ["id"]
    p["train"]["max_steps"] = 5  # speed only: any trained model ranks the same amount of work
    p["wandb"]["mode"] = "disabled"
    return p


def prepare(base: dict, root: Path, n_items: int, n_users: int) -> Path:
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump(bench_params(base, root, n_items, n_users), sort_keys=False))
    env = {**os.environ, "TQDM_DISABLE": "1", "WANDB_MODE": "disabled"}
    for cmd in (*(["transrec", s, "bench"] for s in ("download", "clean", "resize", "tokenize", "split")),
                ["transrec", "transfer", "bench", "id"]):
        proc = subprocess.run([*cmd, "--params", str(params)], capture_output=True, text=True, env=env, cwd=root)
        if proc.returncode != 0:
            raise SystemExit(f"export_throughput: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return params


def measure(params_file: Path, k: int) -> dict:
    import torch

    from transrec import params as P
    from transrec.export import export
    from transrec.paths import run_dir
    from transrec.runtime import set_threads

    params = P.load(params_file)
    threads = set_threads(params["train"]["num_threads"])
    reset_peak(torch.device("cpu"))
    t = time.perf_counter()
    result = export(params, run_dir(params, "bench", "id"), "bench", k=k, progress=False)
    wall = time.perf_counter() - t
    return {**result, "wall_s": wall, "peak_mib": peak_mib(torch.device("cpu")),
            "bytes": Path(result["file"]).stat().st_size, "machine": machine(torch.device("cpu"), threads),
            "chunk": params["evaluate"]["chunk_users"]}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=str(ROOT / "params.yaml"), help="base params (default: the repo's)")
    ap.add_argument("--items", default="1000,10000,100000", help="catalogue sizes (comma-separated)")
    ap.add_argument("--users", type=int, default=10000, help="users per platform (all are exported)")
    ap.add_argument("--k", type=int, default=100, help="recommendations per user")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    base = yaml.safe_load(Path(args.params).read_text())
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    rows = []
    for n in [int(x) for x in args.items.split(",")]:
        with tempfile.TemporaryDirectory(prefix=f"export{n}-") as tmp:
            params = prepare(base, Path(tmp), n, args.users)
            rows.append({"catalogue": n, **measure(params, args.k)})
        print(f"  measured {n} items: {rows[-1]['wall_s']:.1f} s", file=sys.stderr, flush=True)
    print(rows[0]["machine"])
    print(f"SASRec-ID (params.yaml model), top-{args.k} of every user, chunks of {rows[0]['chunk']} users")
    head = f"{'items':>7} {'users':>7} {'export s':>9} {'users/s':>8} {'rows':>10} {'parquet MB':>11} {'peak RSS MiB':>13}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['items']:>7} {r['users']:>7} {r['wall_s']:>9.2f} {r['users'] / r['wall_s']:>8.0f} "
              f"{r['users'] * r['k']:>10} {r['bytes'] / 1e6:>11.1f} {r['peak_mib']:>13.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
