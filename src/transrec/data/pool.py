"""pool: several source platforms as one processed platform, for a pre-training on all of them.

When study.source names several platforms (`source: [beauty, toys, instrument]`), pre-training reads the
platform 'beauty+toys+instrument' that this step writes from their processed folders (after their own
split), so cache, pre-training and its evaluation run on it as on any platform:
- items keep their own platform's key, prefixed with the platform's name ('toys:B0001'): keys never collide
  across platforms, and item ids are the members' ids shifted by the items before them (member order);
- users are pooled the same way ('toys:u17'); each split row also names its `platform`, which the
  training batches read for train.source_sampling (transrec.train.data);
- text ids/masks and images are the members' arrays one after the other (image rows shifted likewise).
Members must agree on what the encoders read: the tokenizer, the text length and the image size.
stats/pool.json counts every member's users, items and interactions, which add up to the pool's.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from transrec.atomic import atomic_memmap, write_json, write_npy, write_parquet
from transrec.errors import TransrecError
from transrec.paths import CATALOG, IMAGES, PROCESSED, SPLIT, STATS, TEXT_IDS, TEXT_MASK, step_stats


def _member(name: str, proc: Path) -> dict:
    missing = [f for f in PROCESSED if not (proc / f).exists()]
    if missing:
        raise TransrecError(f"{proc / missing[0]} not found: run the data steps for {name} before pooling it")
    tokenize = step_stats(proc, "tokenize")
    return {"name": name, "proc": proc, "catalog": pl.read_parquet(proc / CATALOG).sort("item"),
            "split": pl.read_parquet(proc / SPLIT),
            "text_ids": np.load(proc / TEXT_IDS, mmap_mode="r"), "text_mask": np.load(proc / TEXT_MASK, mmap_mode="r"),
            "images": np.load(proc / IMAGES, mmap_mode="r"),
            "tokenizer": json.loads(tokenize.read_text()).get("tokenizer") if tokenize.is_file() else None}


def _agree(members: list[dict], what: str, value) -> None:
    """Every member has the same `what` (value(member)); else one line naming the first that differs."""
    first = value(members[0])
    for m in members[1:]:
        if value(m) != first:
            raise TransrecError(f"pool: {m['name']} has {what} {value(m)!r} but {members[0]['name']} has {first!r}; "
                                "pooled platforms must share it (set it in the data section, not per platform)")


def pool(out: Path, members: dict[str, Path]) -> dict:
    """Write the pooled processed platform of `members` (name -> processed folder, in order) into `out`."""
    ms = [_member(name, Path(proc)) for name, proc in members.items()]
    _agree(ms, "tokenizer", lambda m: m["tokenizer"])
    _agree(ms, "text length", lambda m: m["text_ids"].shape[1])
    _agree([m for m in ms if len(m["images"])] or ms, "image size", lambda m: m["images"].shape[1:])
    for m in ms:
        if not m["catalog"]["item"].equals(pl.Series("item", np.arange(m["catalog"].height)), check_dtypes=False):
            raise TransrecError(f"{m['proc'] / CATALOG}: items are not 0..n-1")

    catalogs, splits, per_member = [], [], {}
    item_offset = image_offset = 0
    for m in ms:
        name, cat, split = m["name"], m["catalog"], m["split"]
        catalogs.append(cat.with_columns(
            (pl.col("item").cast(pl.Int64) + item_offset).alias("item"),
            (pl.lit(f"{name}:") + pl.col("key").cast(pl.String)).alias("key"),
            pl.when(pl.col("image_row") >= 0).then(pl.col("image_row") + image_offset)
              .otherwise(pl.col("image_row")).cast(pl.Int64).alias("image_row"),
            pl.lit(name).alias("platform")))
        shift = pl.lit(item_offset, dtype=pl.Int64)
        splits.append(split.select(
            (pl.lit(f"{name}:") + pl.col("user").cast(pl.String)).alias("user"),
            pl.col("train").list.eval(pl.element().cast(pl.Int64) + shift).alias("train"),
            (pl.col("valid").cast(pl.Int64) + item_offset).alias("valid"),
            (pl.col("test").cast(pl.Int64) + item_offset).alias("test"),
            pl.lit(name).alias("platform")))
        per_member[name] = {"users": split.height, "items": cat.height,
                            "interactions": int((split["train"].list.len() + 2).sum()),
                            "item_offset": item_offset, "image_offset": image_offset}
        item_offset += cat.height
        image_offset += len(m["images"])

    catalog, table = pl.concat(catalogs), pl.concat(splits)
    write_npy(out / TEXT_IDS, np.concatenate([m["text_ids"] for m in ms]))
    write_npy(out / TEXT_MASK, np.concatenate([m["text_mask"] for m in ms]))
    shape = next((m["images"].shape[1:] for m in ms if len(m["images"])), ms[0]["images"].shape[1:])
    with atomic_memmap(out / IMAGES, (image_offset, *shape), np.uint8) as store:  # row by member: no second copy
        for m, info in zip(ms, per_member.values()):
            store[info["image_offset"]:info["image_offset"] + len(m["images"])] = m["images"]
    write_parquet(out / CATALOG, catalog)
    write_parquet(out / SPLIT, table)

    lengths = table["train"].list.len() + 2
    pool_stats = {"members": per_member, "users": table.height, "items": catalog.height,
                  "interactions": int(lengths.sum())}
    write_json(step_stats(out, "pool"), pool_stats)
    # what the model's readers look for in any processed platform: the tokenizer (PlatformData) and the
    # split's summary (the model card)
    write_json(step_stats(out, "tokenize"), {"tokenizer": ms[0]["tokenizer"], "max_len": int(ms[0]["text_ids"].shape[1]),
                                             "items": catalog.height, "pooled": list(per_member)})
    stats = {"pool": pool_stats, "split": {
        "users": table.height, "interactions": int(lengths.sum()),
        "catalog": dict(sorted(catalog.group_by("modality").len().iter_rows())),
        "sequence_length": {"mean": round(float(lengths.mean()), 3), "median": float(lengths.median()),
                            "max": int(lengths.max())}}}
    write_json(out / STATS, stats)
    return pool_stats
