"""Evaluation cost vs catalogue size: encode the catalogue once, rank users in chunks (a benchmark, not a test).

For each catalogue size (default 1k, 10k, 100k items) a fresh process builds the default model
(params.yaml `model` section, pretrained encoders), a synthetic catalogue in the data contract's
shapes (half text, half image items, seeded random content) and N synthetic users (histories of
5..30 random items), then runs the package's evaluation path:

    encode  `evaluate.ranking.model_scorer`: `Recommender.encode_catalog`, every item once
    rank    `evaluate.ranking.rank_split(split="test")`: per chunk of users one matrix product against
            the catalogue vectors, history masking, pessimistic ranks, HR/NDCG@5/10/20 and MRR

--encode cache (default) is what evaluation does when training used the frozen-layer cache
(train.cache: true): the catalogue is encoded from the cached frozen-bottom activations (random
values of the cache's shapes and dtype here), so only the trainable top blocks run.
--encode full runs the whole encoders from token ids and pixels (train.cache: false, or a run whose cache
is missing or stale; slow on CPU). --encode cache,full measures both on the same catalogues, each size
one after the other, and prints how many times faster the cache path encodes and its peak memory beside
the full path's.

Printed per size: wall seconds of encode and rank (and their rates), peak memory of each phase
(CPU: the process's peak RSS in that phase, Linux clear_refs; CUDA: torch.cuda.max_memory_allocated),
the resident size right before encoding (model + item inputs), the size of one chunk's score
matrix (chunk x items x 4 bytes) and the growth of each cost from the previous size.

    python benchmarks/eval_scaling.py                               # 1k, 10k, 100k items, 4096 users, CPU
    python benchmarks/eval_scaling.py --items 1000,10000 --encode full
    python benchmarks/eval_scaling.py --device cuda
    python benchmarks/eval_scaling.py --params P --items 100000 --encode cache,full   # trainable_blocks >= 1 in P
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from train_throughput import machine, peak_mib, reset_peak, rss_mib  # noqa: E402


def synthetic_features(n_items: int, model, image_size: int, encode: str, seed: int):
    """ItemFeatures for n_items: alternate text/image items, token ids like the tokenizer's, pixels or cache rows."""
    from transrec.data.platform import IMAGE, TEXT
    from transrec.model.items import ItemFeatures

    rng = np.random.default_rng(seed)
    modality = np.where(rng.random(n_items) < 0.5, TEXT, IMAGE).astype(np.int64)
    is_text, is_image = modality == TEXT, modality == IMAGE
    n_text, n_image = int(is_text.sum()), int(is_image.sum())
    width = 16  # data.text.max_len
    text_len = np.zeros(n_items, dtype=np.int64)
    text_len[is_text] = rng.integers(4, width + 1, n_text)
    ids = rng.integers(1000, 29000, (n_items, width))
    ids[:, 0] = 101  # [CLS]
    ids[np.arange(n_items), np.maximum(text_len - 1, 0)] = 102  # [SEP]
    ids[np.arange(width)[None] >= text_len[:, None]] = 0  # right padding
    image_row = np.full(n_items, -1, dtype=np.int64)
    image_row[is_image] = np.arange(n_image)
    f = ItemFeatures(modality=torch.from_numpy(modality), text_ids=torch.from_numpy(ids),
                     text_len=torch.from_numpy(text_len), image_row=torch.from_numpy(image_row), images=None)
    if encode == "full":
        f.images = rng.integers(0, 256, (n_image, image_size, image_size, 3), dtype=np.uint8)
    else:  # the frozen-layer cache's shapes and dtype (train.cache_dtype float16)
        tower = model.items
        text_row = np.full(n_items, -1, dtype=np.int64)
        text_row[is_text] = np.arange(n_text)
        gen = torch.Generator().manual_seed(seed)
        f.text_cache = torch.randn(n_text, width, tower.text.hidden_size, generator=gen).half()
        f.text_row = torch.from_numpy(text_row)
        f.image_cache = torch.randn(n_image, *tower.image.feature_shape, generator=gen).abs().half()
    return f


def synthetic_users(n_users: int, modality: np.ndarray, seed: int):
    """A PlatformData stand-in with n_users random leave-one-out sequences over the catalogue."""
    from transrec.data.platform import PlatformData, Sequences

    rng = np.random.default_rng(seed + 1)
    n_items = len(modality)
    lengths = rng.integers(5, 31, n_users)  # train + valid + test
    seqs = [rng.choice(n_items, size=min(int(n), n_items), replace=False) for n in lengths]
    data = PlatformData.__new__(PlatformData)
    data.name, data.n_items, data.modality = f"synthetic{n_items}", n_items, modality
    data.pool = np.flatnonzero(modality != 0)
    train = [s[:-2] for s in seqs]
    data.train = Sequences(np.concatenate([[0], np.cumsum([len(s) for s in train])]).astype(np.int64),
                           np.concatenate(train).astype(np.int64))
    data.valid = np.array([s[-2] for s in seqs], dtype=np.int64)
    data.test = np.array([s[-1] for s in seqs], dtype=np.int64)
    return data


def child(args) -> dict:
    from transrec import params as P
    from transrec.evaluate.ranking import model_scorer, rank_split
    from transrec.model.config import ModelConfig
    from transrec.model.recommender import Recommender
    from transrec.runtime import set_threads

    params = P.load(args.params)
    device = torch.device(args.device)
    threads = set_threads(args.threads or params["train"]["num_threads"]) if device.type == "cpu" else None
    cfg = ModelConfig.from_dict(params["model"], init_seed=params["train"]["seed"])
    image_size = params["data"]["image"]["size"]
    chunk = args.chunk or params["evaluate"]["chunk_users"]
    t0 = time.perf_counter()
    model = Recommender(cfg, "content", image_size=image_size)
    features = synthetic_features(args.child, model, image_size, args.encode, params["seed"])
    data = synthetic_users(args.users, features.modality.numpy(), params["seed"])
    model.attach(features.to(device))
    model.to(device)
    setup_s = time.perf_counter() - t0
    feature_bytes = sum(t.numel() * t.element_size() for t in (features.text_ids, features.text_cache,
                                                               features.image_cache) if t is not None)
    feature_bytes += features.images.nbytes if features.images is not None else 0
    base = rss_mib() if device.type == "cpu" else torch.cuda.memory_allocated() / 2**20

    with torch.inference_mode():
        reset_peak(device)
        t = time.perf_counter()
        scorer = model_scorer(model, device)  # encode_catalog: every item once
        if device.type == "cuda":
            torch.cuda.synchronize()
        encode_s, encode_peak = time.perf_counter() - t, peak_mib(device)
        reset_peak(device)
        t = time.perf_counter()
        result = rank_split(data, "test", scorer, sorted(set(params["evaluate"]["ks"]) | {10}),
                            params["evaluate"]["mask_history"], chunk, cfg.user_encoder.max_len, device,
                            progress=False)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rank_s, rank_peak = time.perf_counter() - t, peak_mib(device)
    return {"items": args.child, "users": args.users, "chunk": chunk, "encode": args.encode,
            "encode_s": encode_s, "rank_s": rank_s, "encode_peak_mib": encode_peak, "rank_peak_mib": rank_peak,
            "base_mib": base, "feature_mib": feature_bytes / 2**20, "setup_s": setup_s,
            "scores_chunk_mib": min(chunk, args.users) * args.child * 4 / 2**20,
            "hr@10": result["metrics"]["hr@10"], "machine": machine(device, threads)}


def print_table(rows: list[dict], device: str) -> None:
    first = rows[0]
    mem = "CUDA alloc" if device == "cuda" else "RSS"
    source = "frozen-layer cache (top blocks only)" if first["encode"] == "cache" else "token ids/pixels (full encoders)"
    print(f"\ndefault model, encode from {source}; "
          f"{first['users']} users ranked over the full catalogue in chunks of {first['chunk']}; memory = {mem} MiB; "
          f"growth = x over the previous row")
    head = (f"{'items':>7} {'encode s':>9} {'items/s':>8} {'rank s':>7} {'users/s':>8} {'total s':>8} "
            f"{'base':>6} {'enc peak':>9} {'rank peak':>10} {'inputs':>7} {'scores/chunk':>13} "
            f"{'growth enc/rank/peak':>21}")
    print(head)
    print("-" * len(head))
    prev = None
    for r in rows:
        growth = "-"
        if prev:
            growth = (f"{r['encode_s'] / prev['encode_s']:.1f}/{r['rank_s'] / prev['rank_s']:.1f}/"
                      f"{r['rank_peak_mib'] / prev['rank_peak_mib']:.1f}")
        print(f"{r['items']:>7} {r['encode_s']:>9.2f} {r['items'] / r['encode_s']:>8.0f} {r['rank_s']:>7.2f} "
              f"{r['users'] / r['rank_s']:>8.0f} {r['encode_s'] + r['rank_s']:>8.2f} {r['base_mib']:>6.0f} "
              f"{r['encode_peak_mib']:>9.0f} {r['rank_peak_mib']:>10.0f} {r['feature_mib']:>7.0f} "
              f"{r['scores_chunk_mib']:>13.0f} {growth:>21}")
        prev = r


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--params", default=None, help="params.yaml (default: ./params.yaml, else the repo's)")
    ap.add_argument("--items", default="1000,10000,100000", help="catalogue sizes (comma-separated)")
    ap.add_argument("--users", type=int, default=4096, help="users ranked (default 4096)")
    ap.add_argument("--chunk", type=int, default=None, help="users per matrix product (default: evaluate.chunk_users)")
    ap.add_argument("--encode", default="cache", help="cache | full | cache,full (both, compared)")
    ap.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", default=None, help="also write the results to this JSON file")
    ap.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.params = args.params or str(Path("params.yaml") if Path("params.yaml").is_file() else ROOT / "params.yaml")
    if args.device == "cuda" and not torch.cuda.is_available():
        print("eval_scaling: torch.cuda is not available on this machine (use --device cpu)", file=sys.stderr)
        return 2
    encodes = args.encode.split(",")
    if not encodes or any(e not in ("cache", "full") for e in encodes):
        ap.error(f"--encode {args.encode}: expected cache, full or cache,full")
    if args.child is not None:
        print("RESULT " + json.dumps(child(args)), flush=True)
        return 0

    rows = []
    for n in [int(x) for x in args.items.split(",")]:
        for encode in encodes:
            cmd = [sys.executable, __file__, "--child", str(n), "--params", args.params, "--users", str(args.users),
                   "--encode", encode, "--device", args.device]
            cmd += ["--chunk", str(args.chunk)] if args.chunk else []
            cmd += ["--threads", str(args.threads)] if args.threads else []
            proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TQDM_DISABLE": "1"})
            line = next((row for row in proc.stdout.splitlines() if row.startswith("RESULT ")), None)
            if proc.returncode != 0 or line is None:
                print(f"eval_scaling: {n} items ({encode}) failed ({proc.returncode}):\n{proc.stderr[-2000:]}",
                      file=sys.stderr)
                return 1
            rows.append(json.loads(line[len("RESULT "):]))
            print(f"  measured {n} items ({encode}): encode {rows[-1]['encode_s']:.1f} s, rank {rows[-1]['rank_s']:.1f} s",
                  file=sys.stderr, flush=True)

    print(rows[0]["machine"])
    for encode in encodes:
        print_table([r for r in rows if r["encode"] == encode], args.device)
    if len(encodes) == 2:
        print("\ncache vs full encoding (same model, same catalogue):")
        print(f"{'items':>7} {'full s':>8} {'cache s':>8} {'x faster':>9} {'full peak':>10} {'cache peak':>11}")
        for full in (r for r in rows if r["encode"] == "full"):
            cache = next(r for r in rows if r["encode"] == "cache" and r["items"] == full["items"])
            print(f"{full['items']:>7} {full['encode_s']:>8.2f} {cache['encode_s']:>8.2f} "
                  f"{full['encode_s'] / cache['encode_s']:>9.1f} {full['encode_peak_mib']:>10.0f} "
                  f"{cache['encode_peak_mib']:>11.0f}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
