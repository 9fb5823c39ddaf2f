"""Model folder vs pickled checkpoint: bytes on disk and load time, side by side (an experiment that prints figures).

Takes a `best.pt` written by transrec before the model folder (the pickle format: torch.save of a dict),
converts it with `transrec convert-model`, then, alternating in one process so machine noise hits both
alike, times:
  - model, before: torch.load(best.pt, weights_only=False)          (what every reader did)
  - model, after:  transrec.model.checkpoint.read(folder)            (config.json + safetensors + checks)
  - resume, before / after: a resume state of the same model (weights + Adam's two moments + RNG + a
    100-entry log) written and read with torch.save / torch.load vs transrec.tensor_file (safetensors + JSON)

    python benchmarks/model_folder.py --checkpoint results/models/source/pretrain/best.pt [--rounds 20] [--json F]
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

from transrec.cli import main as transrec_main
from transrec.model import checkpoint as ckpt
from transrec.tensor_file import load_tree, save_tree


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def resume_state(state: dict) -> dict:
    """What the training loop's resume file holds for a model of these weights."""
    moments = {i: {"step": torch.tensor(100.0), "exp_avg": torch.randn_like(v.float()),
                   "exp_avg_sq": torch.rand_like(v.float())} for i, v in enumerate(state.values())}
    log = [{"step": s, "epoch": s / 10, "loss": 1.0 / (s + 1), "valid": {"ndcg@10": 0.1, "hr@10": 0.2}} for s in range(100)]
    return {"fingerprint": "0" * 16, "model": state,
            "optimizer": {"state": moments, "param_groups": [{"lr": 1e-3, "betas": [0.9, 0.999], "eps": 1e-8,
                                                              "weight_decay": 0.01, "params": list(moments)}]},
            "rng": {"torch": torch.get_rng_state()}, "state": {"epoch": 10, "step": 1000, "best": 0.1, "log": log}}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", required=True, help="a best.pt of an older transrec")
    ap.add_argument("--params", default="params.yaml", help="for convert-model's catalogue fingerprint")
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--json", default=None, help="also write the figures here")
    args = ap.parse_args(argv)

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="model_folder_"))
    folder = work / "model"
    assert transrec_main(["convert-model", args.checkpoint, str(folder), "--params", args.params]) == 0
    old = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    resume = resume_state(old["state"])
    pickle_resume, tensor_resume = work / "last.pt", work / "resume.safetensors"

    cases = {
        "model, before (torch.load, pickle)": lambda: torch.load(args.checkpoint, map_location="cpu", weights_only=False),
        "model, after (checkpoint.read)": lambda: ckpt.read(folder),
        "resume write, before (torch.save)": lambda: torch.save(resume, pickle_resume),
        "resume write, after (save_tree)": lambda: save_tree(tensor_resume, resume),
        "resume read, before (torch.load, pickle)": lambda: torch.load(pickle_resume, weights_only=False),
        "resume read, after (load_tree)": lambda: load_tree(tensor_resume),
    }
    for fn in cases.values():  # warm-up: imports and the page cache
        fn()
    times: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(args.rounds):
        for name, fn in cases.items():
            times[name].append(_timed(fn))

    sizes = {"best.pt (pickle)": Path(args.checkpoint).stat().st_size,
             **{f"model/{f.name}": f.stat().st_size for f in sorted(folder.iterdir())},
             "model/ in all": sum(f.stat().st_size for f in folder.iterdir()),
             "resume, pickle (last.pt)": pickle_resume.stat().st_size,
             "resume.safetensors": tensor_resume.stat().st_size}
    print(f"{args.checkpoint}: {len(old['state'])} tensors, {sum(v.numel() for v in old['state'].values()):,} values; "
          f"{args.rounds} rounds, alternating, one thread")
    print("\n| file | bytes |\n|---|---|\n" + "\n".join(f"| {k} | {v:,} |" for k, v in sizes.items()))
    print("\n| operation | median ms | min ms |\n|---|---|---|")
    for name, values in times.items():
        print(f"| {name} | {1e3 * statistics.median(values):.2f} | {1e3 * min(values):.2f} |")
    if args.json:
        Path(args.json).write_text(json.dumps({"checkpoint": args.checkpoint, "rounds": args.rounds, "bytes": sizes,
                                               "ms": {k: {"median": 1e3 * statistics.median(v), "min": 1e3 * min(v)}
                                                      for k, v in times.items()}}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
