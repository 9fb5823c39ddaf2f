"""LoRA adapters vs full fine-tuning of the trainable blocks: trainable parameters, s/step, peak memory
(a benchmark, not a test).

Runs `benchmarks/train_throughput.py --paths cache` (the package's training path: distinct items once,
trainable top blocks from the frozen-layer cache) in a fresh process per configuration, on the same
batches: `finetune` trains the top blocks themselves, `lora` keeps them fixed and trains rank-r adapters
on them (transrec.model.lora; text attention query/value, image ungrouped convs). Everything else
(projections, user encoder) trains in both. Needs a params file with model.loss softmax and
trainable_blocks >= 1 and its `transrec cache` (see benchmarks/README.md).

    python benchmarks/lora_transfer.py --params bench.yaml --platform source --rank 8
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", required=True)
    ap.add_argument("--platform", default="source")
    ap.add_argument("--rank", type=int, default=8)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, rank in (("finetune", 0), ("lora", args.rank)):
            out = Path(tmp) / f"{name}.json"
            cmd = [sys.executable, str(HERE / "train_throughput.py"), "--params", args.params, "--platform",
                   args.platform, "--paths", "cache", "--steps", str(args.steps), "--warmup", str(args.warmup),
                   "--device", args.device, "--lora", str(rank), "--json", str(out)] + (["--bf16"] if args.bf16 else [])
            proc = subprocess.run(cmd, capture_output=True, text=True)
            if proc.returncode != 0:
                print(f"lora_transfer: {name} failed ({proc.returncode}):\n{proc.stderr[-2000:]}", file=sys.stderr)
                return 1
            rows[name] = json.loads(out.read_text())
    print(rows["finetune"]["device_name"])
    print(f"{args.platform}, batch {rows['finetune']['batch_size']}, {args.steps} steps after {args.warmup} warm-up, "
          f"{'bf16' if args.bf16 else 'fp32'}; LoRA rank {args.rank}")
    head = f"{'setting':<9} {'trainable params':>17} {'s/step':>8} {'peak MiB':>9} {'before MiB':>11} {'step MiB':>9}"
    print(head)
    print("-" * len(head))
    for name, doc in rows.items():
        r = doc["paths"]["cache"]
        print(f"{name:<9} {doc['trainable_parameters']:>17,} {r['seconds_per_step']:>8.3f} {r['peak_mib']:>9.0f} "
              f"{r['base_mib']:>11.0f} {r['peak_mib'] - r['base_mib']:>9.0f}")
    f, lo = rows["finetune"], rows["lora"]
    print(f"lora / finetune: trainable parameters {lo['trainable_parameters'] / f['trainable_parameters']:.3f}, "
          f"s/step {lo['paths']['cache']['seconds_per_step'] / f['paths']['cache']['seconds_per_step']:.2f}, "
          f"peak memory {lo['paths']['cache']['peak_mib'] / f['paths']['cache']['peak_mib']:.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
