"""`transrec cache <platform>`: the frozen-layer cache (heads tower) or the layer-state cache (side tower).

The frozen bottom of each item encoder gives the same output at every step, so it is computed once
per platform and training runs only the trainable top blocks from it:

    {paths.data}/cache/<platform>/text.npy    [n text items, T, H]  hidden states entering the first
                                               trainable text layer (rows: items whose modality uses
                                               text, in item order; T = longest real text)
    {paths.data}/cache/<platform>/image.npy   [n images.npy rows, C, h, w]  feature maps entering the
                                               first trainable image block (rows = images.npy rows)
    {paths.data}/cache/<platform>/cache.json  the fingerprint, shapes, timing

With model.item_tower: side the encoders are frozen whole and the folder holds the layer-state cache instead:

    {paths.data}/cache/<platform>/layers_text.npy   [n text items, (layers + 1) * P]  the embeddings' output and
                                                     every layer's, each pooled (text_encoder.pooling: mean |
                                                     cls | both) to P = H or 2H values, concatenated
    {paths.data}/cache/<platform>/layers_image.npy  [n images.npy rows, sum of unit widths]  every unit's output
                                                     (Lite0: stem, 16 MBConv blocks, head), global-average pooled
    {paths.data}/cache/<platform>/cache.json        the fingerprint (with the tower and the pooling), the widths

Both are plain .npy files, read memory-mapped; the side tower takes the layers it taps from them.

The fingerprint names the tower, the encoders, their frozen depth, hashes of the frozen weights themselves and of
their pretrained weight files,
image size, text width, storage dtype and the hashes of the input files, so any change to the
encoder, its depth or the data makes the cache stale: the trainer then stops with one line.
"""
from __future__ import annotations

import hashlib
import json
import time
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from transrec.atomic import atomic_memmap, write_json, write_npy
from transrec.data.platform import PlatformData
from transrec.errors import TransrecError
from transrec.model.config import ImageEncoderConfig, TextEncoderConfig
from transrec.model.image import LITE, lite0_weights_file
from transrec.model.items import ContentTower
from transrec.model.side import SideTower
from transrec.model.text import weight_files
from transrec.paths import (
    CACHE_IMAGE,
    CACHE_LAYERS_IMAGE,
    CACHE_LAYERS_TEXT,
    CACHE_META,
    CACHE_TEXT,
    CATALOG,
    IMAGES,
    TEXT_IDS,
    TEXT_MASK,
)

INPUTS = (CATALOG, TEXT_IDS, TEXT_MASK, IMAGES)
DTYPES = {"float16": np.float16, "float32": np.float32}


def file_hash(path: Path) -> str:
    """sha256 of a file, computed once per process per version of it: a run checks the encoders' weight files
    (~100 MB) and its split at every load and save, and every output here is replaced atomically (a new
    version has a new mtime)."""
    stat = Path(path).stat()
    return _file_hash(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=256)
def _file_hash(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            h.update(block)
    return h.hexdigest()


def weights_hash(module: torch.nn.Module, prefixes: list[str]) -> str:
    h = hashlib.sha256()
    for key, value in module.state_dict().items():
        if key.startswith(tuple(prefixes)):
            h.update(key.encode())
            h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _files_hash(paths: list[Path]) -> str | None:
    return hashlib.sha256("".join(file_hash(p) for p in paths).encode()).hexdigest()[:16] if paths else None


def encoder_files(text: TextEncoderConfig, image: ImageEncoderConfig) -> dict:
    """Hashes of the local files the encoders' pretrained weights load from (None: random or hub weights)."""
    lite0 = lite0_weights_file() if image.name == LITE and image.pretrained else None
    return {"text": _files_hash(weight_files(text)), "image": _files_hash([lite0] if lite0 else [])}


def fingerprint(tower: ContentTower | SideTower, data: PlatformData, dtype: str) -> dict:
    """frozen_weights hashes the frozen tensors themselves (an encoder built with its bottom); weights_file
    hashes the pretrained files they load from, which is what a run that does not build its frozen bottom
    (it trains from this cache, see TextEncoder) can check; `load` compares what both sides have."""
    t, i = tower.text, tower.image
    files = encoder_files(t.cfg, i.cfg)
    return {
        "tower": tower.cfg.item_tower,
        "text": {"name": t.cfg.name, "pretrained": t.cfg.pretrained, "layers": t.n_layers,
                 **({"pooling": t.cfg.pooling} if isinstance(tower, SideTower) else {}),
                 "frozen_depth": t.frozen_depth, "weights_file": files["text"],
                 "frozen_weights": weights_hash(t, t.frozen_prefixes()) if t.has_bottom else None},
        "image": {"name": i.cfg.name, "pretrained": i.cfg.pretrained, "frozen_depth": i.frozen_depth,
                  "image_size": data.image_size, "weights_file": files["image"],
                  "frozen_weights": weights_hash(i, i.frozen_prefixes()) if i.has_bottom else None},
        "max_len": int(data.text_ids.shape[1]),
        "dtype": dtype,
        "inputs": {name: file_hash(data.proc / name) for name in INPUTS},
    }


@torch.no_grad()
def build(tower: ContentTower | SideTower, data: PlatformData, out: Path, dtype: str = "float16", chunk: int = 256,
          device="cpu") -> dict:
    if isinstance(tower, SideTower):
        return build_layer_states(tower, data, out, dtype, chunk, device)
    start = time.time()
    tower.eval()
    np_dtype = DTYPES[dtype]
    text_items = np.flatnonzero(data.uses_text())
    width = int(data.text_len[text_items].max(initial=1)) if len(text_items) else 1
    text = np.zeros((len(text_items), width, tower.text.hidden_size), dtype=np_dtype)
    for s in tqdm(range(0, len(text_items), chunk), desc=f"cache text {data.name}", unit="chunk"):
        items = text_items[s:s + chunk]
        ids = torch.from_numpy(np.asarray(data.text_ids[items], dtype=np.int64)).to(device)
        lengths = torch.from_numpy(data.text_len[items]).to(device)
        hidden = tower.text.bottom_forward(ids, lengths)
        text[s:s + len(items), : hidden.shape[1]] = hidden.cpu().numpy().astype(np_dtype)
    n_images = len(data.images) if data.images.ndim == 4 else 0
    image = np.zeros((n_images, *tower.image.feature_shape), dtype=np_dtype)
    for s in tqdm(range(0, n_images, chunk), desc=f"cache images {data.name}", unit="chunk"):
        pixels = torch.from_numpy(np.array(data.images[s:s + chunk])).to(device)
        image[s:s + len(pixels)] = tower.image.bottom_forward(pixels).cpu().numpy().astype(np_dtype)
    write_npy(out / CACHE_TEXT, text)
    write_npy(out / CACHE_IMAGE, image)
    meta = {"platform": data.name, "fingerprint": fingerprint(tower, data, dtype),
            "text": {"items": len(text_items), "shape": list(text.shape)},
            "image": {"rows": n_images, "shape": list(image.shape)},
            "bytes": int(text.nbytes + image.nbytes), "wall_s": round(time.time() - start, 2)}
    write_json(out / CACHE_META, meta)  # written last: its presence means the arrays are complete
    return meta


@torch.no_grad()
def build_layer_states(tower: SideTower, data: PlatformData, out: Path, dtype: str = "float16", chunk: int = 256,
                       device="cpu") -> dict:
    """The layer-state cache: every text item's and every image row's pooled layer states, written through a
    memory-mapped .npy (a large catalogue never sits in memory twice)."""
    start = time.time()
    tower.eval()
    np_dtype = DTYPES[dtype]
    text_items = np.flatnonzero(data.uses_text())
    n_images = len(data.images) if data.images.ndim == 4 else 0
    shapes = {"text": (len(text_items), sum(tower.text_widths)), "image": (n_images, sum(tower.image_widths))}
    with atomic_memmap(out / CACHE_LAYERS_TEXT, shapes["text"], np_dtype) as text:
        for s in tqdm(range(0, len(text_items), chunk), desc=f"layer states text {data.name}", unit="chunk"):
            items = text_items[s:s + chunk]
            ids = torch.from_numpy(np.asarray(data.text_ids[items], dtype=np.int64)).to(device)
            lengths = torch.from_numpy(data.text_len[items]).to(device)
            text[s:s + len(items)] = tower.text.layer_states(ids, lengths).flatten(1).cpu().numpy().astype(np_dtype)
    with atomic_memmap(out / CACHE_LAYERS_IMAGE, shapes["image"], np_dtype) as image:
        for s in tqdm(range(0, n_images, chunk), desc=f"layer states images {data.name}", unit="chunk"):
            pixels = torch.from_numpy(np.array(data.images[s:s + chunk])).to(device)
            image[s:s + len(pixels)] = tower.image.layer_states(pixels).cpu().numpy().astype(np_dtype)
    item_size = np.dtype(np_dtype).itemsize
    meta = {"platform": data.name, "fingerprint": fingerprint(tower, data, dtype),
            "text": {"items": len(text_items), "shape": list(shapes["text"]), "widths": tower.text_widths,
                     "bytes_per_item": shapes["text"][1] * item_size},
            "image": {"rows": n_images, "shape": list(shapes["image"]), "widths": tower.image_widths,
                      "bytes_per_item": shapes["image"][1] * item_size},
            "bytes": int((np.prod(shapes["text"]) + np.prod(shapes["image"])) * item_size),
            "wall_s": round(time.time() - start, 2)}
    write_json(out / CACHE_META, meta)  # written last: its presence means the arrays are complete
    return meta


def _first_difference(a, b, path="") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for key in sorted(set(a) | set(b)):
            if a.get(key) != b.get(key):
                return _first_difference(a.get(key), b.get(key), f"{path}.{key}" if path else key)
    return f"{path} ({a!r} -> {b!r})"


def load(tower: ContentTower | SideTower, data: PlatformData, where: Path, dtype: str) -> dict:
    """The cache arrays as tensors, after checking the fingerprint; stale or missing -> one-line error."""
    meta_path = where / CACHE_META
    rebuild = f"run `transrec cache {data.name}` (or set train.cache: false)"
    kind = "layer-state" if isinstance(tower, SideTower) else "frozen-layer"
    if not meta_path.is_file():
        raise TransrecError(f"no {kind} cache at {where}: {rebuild}")
    stored = json.loads(meta_path.read_text())["fingerprint"]
    expected = fingerprint(tower, data, dtype)
    if stored.get("tower", "heads") != expected["tower"]:  # the other tower's cache: say so before any detail
        raise TransrecError(f"stale {kind} cache {where}: tower ({stored.get('tower', 'heads')!r} -> "
                            f"{expected['tower']!r}) changed; {rebuild}")
    stored.setdefault("tower", "heads")  # caches written before the side tower existed are heads caches
    for encoder in ("text", "image"):  # an encoder built without its bottom checks the weight files only
        if expected[encoder]["frozen_weights"] is None and isinstance(stored.get(encoder), dict):
            stored[encoder]["frozen_weights"] = None
    if stored != expected:
        raise TransrecError(f"stale {kind} cache {where}: {_first_difference(stored, expected)} changed; {rebuild}")
    text_items = np.flatnonzero(data.uses_text())
    text_row = np.full(data.n_items, -1, dtype=np.int64)
    text_row[text_items] = np.arange(len(text_items))
    if isinstance(tower, SideTower):  # memory-mapped: the tower reads the layers it taps
        return {"text_layers": np.load(where / CACHE_LAYERS_TEXT, mmap_mode="r"), "text_row": torch.from_numpy(text_row),
                "image_layers": np.load(where / CACHE_LAYERS_IMAGE, mmap_mode="r")}
    return {"text": torch.from_numpy(np.load(where / CACHE_TEXT)), "text_row": torch.from_numpy(text_row),
            "image": torch.from_numpy(np.load(where / CACHE_IMAGE))}
