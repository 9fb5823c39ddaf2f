"""Peak memory of training at the default batch and at a 4x larger batch (a benchmark, not a test).

Each (batch size, path) runs `benchmarks/train_throughput.py --paths PATH --batch-size B` in a fresh
process, so no allocation of an earlier configuration hides in a later peak. Printed per row: the
resident size (CPU) or allocated CUDA memory before the first step (model, item inputs, frozen-layer
cache), the peak during the steps (CPU: peak RSS of the process, Linux clear_refs; CUDA:
torch.cuda.max_memory_allocated), the step's own share (peak - before), and seconds per step.

    python benchmarks/train_memory.py                          # default batch and 4x, real (cache) path, CPU
    python benchmarks/train_memory.py --paths cache,dedup --factor 4
    python benchmarks/train_memory.py --device cuda --bf16
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=None, help="params.yaml (default: ./params.yaml, else the repo's)")
    ap.add_argument("--platform", default="source")
    ap.add_argument("--batch-size", type=int, default=None, help="the default batch (default: train.batch_size)")
    ap.add_argument("--factor", type=int, default=4, help="the larger batch is this many times the default")
    ap.add_argument("--paths", default="cache", help="comma-separated: cache (the real path), dedup, naive")
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)
    params_path = args.params or str(Path("params.yaml") if Path("params.yaml").is_file() else ROOT / "params.yaml")
    if args.batch_size is None:
        import yaml

        args.batch_size = yaml.safe_load(Path(params_path).read_text())["train"]["batch_size"]

    rows, header = [], None
    with tempfile.TemporaryDirectory() as tmp:
        for path in args.paths.split(","):
            for batch in (args.batch_size, args.batch_size * args.factor):
                out = Path(tmp) / f"{path}_{batch}.json"
                cmd = [sys.executable, str(HERE / "train_throughput.py"), "--params", params_path,
                       "--platform", args.platform, "--paths", path, "--batch-size", str(batch),
                       "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device,
                       "--json", str(out)] + (["--bf16"] if args.bf16 else [])
                proc = subprocess.run(cmd, capture_output=True, text=True)
                if proc.returncode != 0:
                    print(f"train_memory: {path} at batch {batch} failed ({proc.returncode}):\n"
                          f"{proc.stderr[-2000:]}", file=sys.stderr)
                    return 1
                doc = json.loads(out.read_text())
                header = header or doc["device_name"]
                r = doc["paths"][path]
                rows.append({"path": path, "batch_size": batch, "base_mib": r["base_mib"], "peak_mib": r["peak_mib"],
                             "step_mib": r["peak_mib"] - r["base_mib"], "seconds_per_step": r["seconds_per_step"],
                             "sequences_per_s": r["sequences_per_s"],
                             "distinct_items_per_step": doc["distinct_items_per_step"]})
                print(f"  measured {path} batch {batch}: peak {r['peak_mib']:.0f} MiB", file=sys.stderr, flush=True)

    mem = "CUDA alloc" if args.device == "cuda" else "RSS"
    print(header)
    print(f"training memory, {args.platform}, {'bf16' if args.bf16 else 'fp32'}; {args.steps} steps after "
          f"{args.warmup} warm-up; MiB of {mem}")
    head = f"{'path':<7} {'batch':>6} {'distinct items':>15} {'before':>8} {'peak':>8} {'step share':>11} " \
           f"{'s/step':>8} {'seq/s':>7}"
    print(head)
    print("-" * len(head))
    for r in rows:
        print(f"{r['path']:<7} {r['batch_size']:>6} {r['distinct_items_per_step']:>15.0f} {r['base_mib']:>8.0f} "
              f"{r['peak_mib']:>8.0f} {r['step_mib']:>11.0f} {r['seconds_per_step']:>8.2f} {r['sequences_per_s']:>7.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"device": header, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
