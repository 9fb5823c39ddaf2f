"""resize: decode every image an item shows, convert to RGB, resize + centre-crop, store as one uint8 array.

Output: images.npy (uint8 [n_image_items, size, size, 3], a memmap on read) and image_index.parquet
(item, row into images.npy or -1, status: ok | corrupt | missing | none). An unreadable or missing
image is counted here; the split step then falls the item back to its text, or drops it.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import get_context
from pathlib import Path

import numpy as np
import polars as pl
from PIL import Image, ImageOps
from tqdm import tqdm

from transrec.atomic import atomic_memmap, write_json, write_parquet
from transrec.errors import TransrecError
from transrec.paths import IMAGES, IMAGE_INDEX, step_stats

Image.MAX_IMAGE_PIXELS = 200_000_000  # larger files are refused as corrupt (decompression bombs)


def load_image(path: str, size: int) -> tuple[str, np.ndarray | None]:
    """(status, size x size x 3 uint8 array or None) for one image file."""
    try:
        with Image.open(path) as img:
            img.draft("RGB", (size, size))  # JPEG: decode at reduced scale, much faster for big photos
            img = img.convert("RGB")
            img = ImageOps.fit(img, (size, size), method=Image.Resampling.BILINEAR)
            return "ok", np.asarray(img, dtype=np.uint8)
    except FileNotFoundError:
        return "missing", None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        return "corrupt", None


def _load(args: tuple[str, int]):
    return load_image(*args)


def resize(items_path: Path, out_dir: Path, size: int, workers: int) -> dict:
    items = pl.read_parquet(items_path)
    wants = items.filter(pl.col("modality").is_in(["image", "both"]))
    n = wants.height
    paths = wants["image"].to_list()
    statuses: list[str] = []
    with atomic_memmap(out_dir / IMAGES, (n, size, size, 3), np.uint8) as store:
        jobs = [(p, size) for p in paths]
        if workers > 1 and n > 256:
            # a worker killed mid-way (out of memory on a huge image) raises BrokenProcessPool; a
            # multiprocessing.Pool would wait for its result forever
            pool = ProcessPoolExecutor(workers, mp_context=get_context("spawn"))
            results = pool.map(_load, jobs, chunksize=64)
        else:
            pool, results = None, map(_load, jobs)
        try:
            for row, (status, array) in enumerate(tqdm(results, total=n, desc="resize images", unit="img")):
                statuses.append(status)
                if array is not None:
                    store[row] = array
        except BrokenProcessPool:
            raise TransrecError(f"an image decoding process died after {len(statuses)} of {n} images "
                                f"(out of memory?); rerun with --workers 1 to find the image") from None
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)
    index = items.select("item").join(
        wants.select("item").with_columns(pl.Series("row", np.arange(n, dtype=np.int32)),
                                          pl.Series("status", statuses, dtype=pl.String)),
        on="item", how="left",
    ).with_columns(pl.col("row").fill_null(-1), pl.col("status").fill_null("none")).sort("item")
    write_parquet(out_dir / IMAGE_INDEX, index)
    counts = {s: statuses.count(s) for s in ("ok", "corrupt", "missing")}
    stats = {"size": size, "requested": n, **counts, "bytes": int(n * size * size * 3)}
    write_json(step_stats(out_dir, "resize"), stats)
    return stats


def default_workers() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))
