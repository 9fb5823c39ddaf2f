"""Training throughput of the default model: naive vs dedup vs dedup + frozen cache (a benchmark, not a test).

Three ways to produce the item vectors of a training step, measured in one run on the same batches,
the same number of steps (warm-up excluded), each from the same initial weights and optimizer state:

  naive        every item occurrence (history positions, positives, negatives) through the FULL item
               encoder (frozen bottom + trainable top, no cache), one modality at a time, scattered back
               into sequence order with a per-position Python loop, like the reference TransRec code.
               Implemented here with the model's own encoder modules; not part of the package.
  dedup        torch.unique over the step's items: each distinct item once through the full encoder,
               vectorised scatter (the package's `Recommender.item_vectors` without the cache).
  dedup+cache  the package's real training path: distinct items once, and only the trainable top
               blocks run, from the frozen-layer cache (`transrec cache`).

Everything else (user encoder, loss, backward, gradient clipping, AdamW step) is the package's own
code and identical in the three paths. Printed per path: seconds per step, sequences/s, item vectors
served/s (every occurrence counts: the same work for all paths), encoder rows/s (rows that actually
ran through an item encoder), peak memory (CPU: peak RSS of the process during that path;
CUDA: torch.cuda.max_memory_allocated), the speed-up over naive, and the first step's loss: dedup and
dedup+cache agree up to the cache's float16 storage; naive differs only by dropout (the encoder tops
draw a mask per occurrence instead of per distinct item; with dropout off its vectors equal dedup's).

Run it from a folder holding the processed platform and its cache (see benchmarks/README.md):

    python benchmarks/train_throughput.py                     # default params, `source`, CPU
    python benchmarks/train_throughput.py --steps 10 --batch-size 128
    python benchmarks/train_throughput.py --interleave            # paths round-robin per step (busy machine)
    python benchmarks/train_throughput.py --device cuda --bf16 --json out.json
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch

from transrec import params as P
from transrec.data.platform import BOTH, IMAGE, TEXT, PlatformData
from transrec.model.build import build_model
from transrec.model.items import item_features
from transrec.paths import processed_dir
from transrec.runtime import set_threads
from transrec.train.data import Batches

ROOT = Path(__file__).resolve().parents[1]
PATHS = ("naive", "dedup", "cache")
LABELS = {"naive": "naive (full encoder, every occurrence, loop)", "dedup": "dedup (unique, full encoder)",
          "cache": "dedup + frozen cache (package)"}


# ---- memory -------------------------------------------------------------------------------------------
def _status_kib(key: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def reset_peak(device: torch.device) -> None:
    """Start a new peak-memory window: CUDA peak stats, or the process's peak RSS (Linux clear_refs 5)."""
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        return
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        pass  # not Linux or not allowed: the peak then covers the whole process so far


def peak_mib(device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
        return torch.cuda.max_memory_allocated() / 2**20
    kib = _status_kib("VmHWM")
    if kib is None:
        import resource

        kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kib / 1024


def rss_mib() -> float:
    kib = _status_kib("VmRSS")
    return float("nan") if kib is None else kib / 1024


# ---- the naive path ---------------------------------------------------------------------------------------
def naive_item_vectors(model, ids: torch.Tensor) -> torch.Tensor:
    """Every occurrence of every item through the full encoder; per-position Python scatter (the reference).

    The same numbers as `Recommender.item_vectors` with uncached features, at the cost of encoding each
    item as often as it occurs in the step and of one autograd copy per position."""
    tower, d = model.items, model.cfg.d
    f = tower.features
    flat = ids.reshape(-1)
    out = torch.zeros(len(flat), d, device=ids.device)
    positions = torch.nonzero(flat >= 0).squeeze(1)
    occ = flat[positions]  # duplicates kept: every occurrence is encoded
    modality = f.modality[occ]
    text_occ = occ[(modality == TEXT) | (modality == BOTH)]
    image_occ = occ[(modality == IMAGE) | (modality == BOTH)]
    text_v = tower.text(f.text_ids[text_occ], f.text_len[text_occ]) if len(text_occ) else None  # bottom + top
    image_v = tower.image(f.pixels(f.image_row[image_occ])) if len(image_occ) else None      # bottom + top
    ti = ii = 0
    for pos, m in zip(positions.tolist(), modality.tolist()):  # one position at a time, as the reference does
        if m == BOTH:
            t, i = text_v[ti].float(), image_v[ii].float()
            ti, ii = ti + 1, ii + 1
            out[pos] = tower.fuse(torch.cat([t, i])).float() if tower.fuse is not None else t + i
        elif m == TEXT:
            out[pos] = text_v[ti].float()
            ti += 1
        elif m == IMAGE:
            out[pos] = image_v[ii].float()
            ii += 1
    return out.view(*ids.shape, d)


# ---- measuring --------------------------------------------------------------------------------------------
def batch_counts(batch: dict) -> tuple[int, int]:
    """(item occurrences, distinct items) that one step needs vectors for."""
    ids = torch.cat([batch["history"].reshape(-1), batch["targets"].reshape(-1), batch["negatives"].reshape(-1)])
    ids = ids[ids >= 0]
    return int(len(ids)), int(len(torch.unique(ids)))


def encoder_rows(model) -> int:
    return model.items.text.rows_encoded + model.items.image.rows_encoded


def take_batches(data: PlatformData, cfg, batch_size: int, seed: int, n: int) -> list[dict]:
    batches = Batches(data, cfg, batch_size, seed)
    out, epoch = [], 0
    while len(out) < n:
        for batch in batches.epoch(epoch):
            if len(batch["history"]) == batch_size:  # full batches only: every step does the same work
                out.append(batch)
            if len(out) == n:
                break
        epoch += 1
    return out


class Runner:
    """One path: its model (weights as at the start), optimizer, RNG state and timings."""

    def __init__(self, model, path: str, features: dict, device: torch.device, autocast, tcfg: dict, seed: int):
        self.model, self.path, self.device, self.autocast, self.tcfg = model, path, device, autocast, tcfg
        model.attach(features["cache" if path == "cache" else "full"])
        if path == "naive":
            model.item_vectors = lambda ids: naive_item_vectors(model, ids)  # instance attribute: this path only
        self.optimizer = torch.optim.AdamW(model.param_groups(tcfg["lr"], tcfg["encoder_lr"], tcfg["weight_decay"]))
        torch.manual_seed(seed)  # the same dropout masks in every path
        self.rng = self._rng()
        self.losses, self.rows, self.seconds, self.peak, self.base = [], 0, 0.0, 0.0, None

    def _rng(self):
        return (torch.get_rng_state(), torch.cuda.get_rng_state() if self.device.type == "cuda" else None)

    def step(self, batch: dict, timed: bool, track_memory: bool) -> None:
        model, device = self.model, self.device
        torch.set_rng_state(self.rng[0])
        if self.rng[1] is not None:
            torch.cuda.set_rng_state(self.rng[1])
        batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        model.train()
        if device.type == "cuda":
            torch.cuda.synchronize()
        if self.base is None:
            self.base = torch.cuda.memory_allocated(device) / 2**20 if device.type == "cuda" else rss_mib()
        if track_memory:
            reset_peak(device)
        before, t0 = encoder_rows(model), time.perf_counter()
        with self.autocast:
            loss = model.calculate_loss(batch)
        loss.backward()
        if self.tcfg["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(model.parameters(), self.tcfg["grad_clip"])
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.losses.append(float(loss.detach()))  # a sync point on CUDA
        if timed:
            self.seconds += time.perf_counter() - t0
            self.rows += encoder_rows(model) - before
        if track_memory:
            self.peak = max(self.peak, peak_mib(device))
        self.rng = self._rng()

    def result(self, track_memory: bool) -> dict:
        return {"seconds": self.seconds, "encoder_rows": self.rows, "peak_mib": self.peak if track_memory else None,
                "base_mib": self.base, "first_loss": self.losses[0], "last_loss": self.losses[-1]}


def measure_blocks(model, paths, features, batches, warmup, device, autocast, tcfg, init_state, seed) -> dict:
    """Each path on its own, one after the other (the lightest first: a later, larger peak hides nothing)."""
    results = {}
    for path in reversed(paths):
        model.load_state_dict(init_state)
        runner = Runner(model, path, features, device, autocast, tcfg, seed)
        for i, batch in enumerate(batches):
            runner.step(batch, timed=i >= warmup, track_memory=True)
        model.__dict__.pop("item_vectors", None)
        results[path] = runner.result(True)
        print(f"  measured {path}: {runner.seconds / (len(batches) - warmup):.3f} s/step", file=sys.stderr, flush=True)
    return results


def measure_interleaved(model, paths, features, batches, warmup, device, autocast, tcfg, init_state, seed) -> dict:
    """Round robin: step i of every path before step i+1 of any (rotating the order), each path with its own
    model copy, so a change in machine load affects every path alike. Per-path CPU memory is not separable here."""
    model.load_state_dict(init_state)
    model.attach(None)  # copies without the item inputs; each runner attaches its own
    runners = [Runner(copy.deepcopy(model), path, features, device, autocast, tcfg, seed) for path in paths]
    cuda = device.type == "cuda"
    for i, batch in enumerate(batches):
        for runner in runners[i % len(runners):] + runners[:i % len(runners)]:
            runner.step(batch, timed=i >= warmup, track_memory=cuda)
        print(f"  step {i + 1}/{len(batches)} done", file=sys.stderr, flush=True)
    return {r.path: r.result(cuda) for r in runners}


def machine(device: torch.device, threads: int | None) -> str:
    if device.type == "cuda":
        return f"device: {torch.cuda.get_device_name(device)}; torch {torch.__version__}"
    model = platform.processor() or platform.machine()
    try:
        model = next(row.split(":", 1)[1].strip() for row in Path("/proc/cpuinfo").read_text().splitlines()
                     if row.startswith("model name"))
    except (OSError, StopIteration):
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    load = " / ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    return (f"device: cpu ({model}, {cores} usable cores, {threads} torch threads, load avg {load} at start); "
            f"torch {torch.__version__}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=None, help="params.yaml (default: ./params.yaml, else the repo's)")
    ap.add_argument("--platform", default="source", help="processed platform with a frozen-layer cache")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per path (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps before them (default 1)")
    ap.add_argument("--batch-size", type=int, default=None, help="users per step (default: train.batch_size)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast (what training uses on GPU)")
    ap.add_argument("--paths", default=",".join(PATHS), help=f"comma-separated subset of {','.join(PATHS)}")
    ap.add_argument("--threads", type=int, default=None, help="CPU threads (default: train.num_threads rule)")
    ap.add_argument("--interleave", action="store_true",
                    help="round-robin the paths step by step (robust to changing machine load; no CPU memory column)")
    ap.add_argument("--lora", type=int, default=0, metavar="RANK",
                    help="train LoRA adapters of this rank on the trainable blocks instead of the blocks (the lora setting)")
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    args = ap.parse_args(argv)

    paths = [p for p in PATHS if p in args.paths.split(",")]
    if not paths:
        ap.error(f"--paths: choose from {','.join(PATHS)}")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("train_throughput: torch.cuda is not available on this machine (use --device cpu)", file=sys.stderr)
        return 2
    params_path = Path(args.params) if args.params else (Path("params.yaml") if Path("params.yaml").is_file()
                                                        else ROOT / "params.yaml")
    params = P.load(str(params_path))
    # What is measured is the per-step encoding of the items a sampled loss touches, through trainable
    # encoder tops; the CPU default (frozen encoders, full cross-entropy) has none (gpu_check.sh sets both).
    model_cfg = params["model"]
    if model_cfg["loss"] == "ce" or not (model_cfg["text_encoder"]["trainable_blocks"]
                                         or model_cfg["image_encoder"]["trainable_blocks"]):
        print(f"train_throughput: {params_path} trains no encoder block against a sampled loss; set model.loss: "
              "softmax and trainable_blocks >= 1, then `transrec cache` (benchmarks/gpu_check.sh does)", file=sys.stderr)
        return 2
    tcfg = dict(params["train"])
    tcfg.pop("pretrain", None)
    batch_size = args.batch_size or tcfg["batch_size"]
    device = torch.device(args.device)
    threads = set_threads(args.threads or tcfg["num_threads"]) if device.type == "cpu" else None
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if args.bf16 else nullcontext()
    seed = tcfg["seed"]

    proc = processed_dir(params, args.platform)
    t0 = time.perf_counter()
    data = PlatformData(proc, args.platform)
    model = build_model(params, data, "content", device, use_cache=True, dtype=tcfg["cache_dtype"])
    features = {"cache": model.features, "full": item_features(data, None, device)}
    if args.lora:
        from transrec.model import lora

        lora.add_adapters(model, rank=args.lora, alpha=2 * args.lora, dropout=0.0)
        model.to(device)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    init_state = copy.deepcopy(model.state_dict())
    batches = take_batches(data, model.cfg, batch_size, seed, args.warmup + args.steps)
    counts = [batch_counts(b) for b in batches[args.warmup:]]
    occurrences = sum(c[0] for c in counts) / len(counts)
    distinct = sum(c[1] for c in counts) / len(counts)
    setup_s = time.perf_counter() - t0
    cfg = model.cfg

    print(machine(device, threads))
    print(f"model: d {cfg.d}, user encoder {cfg.user_encoder.mode} {cfg.user_encoder.layers}x{cfg.user_encoder.hidden} "
          f"N={cfg.user_encoder.max_len}; text {cfg.text_encoder.name} ({model.items.text.n_layers} layers, "
          f"{cfg.text_encoder.trainable_blocks} trained); image {cfg.image_encoder.name} "
          f"({model.items.image.n_units} units, {cfg.image_encoder.trainable_blocks} trained); "
          f"negatives {cfg.negatives} x{cfg.n_negatives}; {'bf16 autocast' if args.bf16 else 'fp32'}; "
          f"{f'LoRA rank {args.lora}, ' if args.lora else ''}{trainable:,} trainable parameters")
    print(f"data: {args.platform} ({data.n_items} items, {len(data.users)} users); batch {batch_size} users; "
          f"{args.steps} timed steps after {args.warmup} warm-up, same batches for every path "
          f"({'interleaved step by step' if args.interleave else 'one path after the other'}); per step "
          f"{occurrences:.0f} item occurrences, {distinct:.0f} distinct items ({occurrences / distinct:.2f}x); "
          f"setup {setup_s:.1f} s; rss {rss_mib():.0f} MiB")
    sys.stdout.flush()

    measure = measure_interleaved if args.interleave else measure_blocks
    results = measure(model, paths, features, batches, args.warmup, device, autocast, tcfg, init_state, seed)

    mem = "peak CUDA alloc MiB" if device.type == "cuda" else "peak RSS MiB"
    head = f"{'path':<46} {'s/step':>8} {'seq/s':>8} {'item vecs/s':>12} {'enc rows/s':>11} {mem:>19} " \
           f"{'vs naive':>9} {'loss@1':>8}"
    print(head)
    print("-" * len(head))
    base = results.get("naive")
    for path in paths:
        r = results[path]
        per_step = r["seconds"] / args.steps
        r.update(seconds_per_step=per_step, sequences_per_s=batch_size / per_step,
                 item_vectors_per_s=occurrences / per_step, encoder_rows_per_s=r["encoder_rows"] / r["seconds"],
                 speedup_vs_naive=(base["seconds"] / r["seconds"]) if base else None)
        ratio = f"{r['speedup_vs_naive']:.1f}x" if base else "-"
        peak = "-" if r["peak_mib"] is None else f"{r['peak_mib']:.0f}"
        print(f"{LABELS[path]:<46} {per_step:>8.3f} {r['sequences_per_s']:>8.1f} {r['item_vectors_per_s']:>12.0f} "
              f"{r['encoder_rows_per_s']:>11.0f} {peak:>19} {ratio:>9} {r['first_loss']:>8.4f}")
    if args.json:
        doc = {"device": str(device), "device_name": machine(device, threads), "bf16": args.bf16,
               "batch_size": batch_size, "steps": args.steps, "warmup": args.warmup, "platform": args.platform,
               "item_occurrences_per_step": occurrences, "distinct_items_per_step": distinct, "lora": args.lora,
               "trainable_parameters": trainable, "paths": results}
        Path(args.json).write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
