"""split: leave-one-out per user, the final catalogue, and the platform's complete stats.json.

Each user's ordered sequence s: train = s[:-2], validation target = s[-2] (context s[:-2]),
test target = s[-1] (context s[:-1]).

This step is also where the content outcome of resize is settled: an image item whose image
failed to decode falls back to its text, or is dropped if it has none; interactions with dropped
items are removed and users left with fewer than 3 interactions are dropped, all counted.
Dropped items keep their index (images.npy and text_ids.npy rows stay aligned) and are marked
modality 'dropped' in catalog.parquet, so evaluation never ranks them.
"""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl

from transrec.atomic import write_json, write_parquet
from transrec.errors import TransrecError
from transrec.paths import CATALOG, IMAGE_INDEX, INTERACTIONS, ITEMS, SPLIT, STATS, step_stats

MIN_SEQUENCE = 3  # one train item, one validation target, one test target


def final_modality(items: pl.DataFrame, index: pl.DataFrame) -> pl.DataFrame:
    """Catalogue with each item's final modality after image decoding outcomes."""
    cat = items.join(index, on="item", how="left")
    has_text = pl.col("text").fill_null("") != ""
    image_ok = pl.col("status") == "ok"
    modality = (pl.when(pl.col("modality") == "text").then(pl.lit("text"))
                .when(pl.col("modality") == "image").then(
                    pl.when(image_ok).then(pl.lit("image")).when(has_text).then(pl.lit("text")).otherwise(pl.lit("dropped")))
                .when(pl.col("modality") == "both").then(
                    pl.when(image_ok).then(pl.lit("both")).otherwise(pl.lit("text")))
                .otherwise(pl.lit("dropped")))
    return cat.with_columns(modality.alias("final"), pl.col("row").alias("image_row"))


def split(proc: Path) -> dict:
    inter = pl.read_parquet(proc / INTERACTIONS)
    items = pl.read_parquet(proc / ITEMS)
    index = pl.read_parquet(proc / IMAGE_INDEX)
    cat = final_modality(items, index)
    changed = cat.filter(pl.col("final") != pl.col("modality"))
    fallbacks = {f"{a} -> {b} (image {s})": n for a, b, s, n in
                 changed.group_by("modality", "final", "status").len().sort("modality", "final", "status").iter_rows()}

    drops: dict[str, int] = {}
    dropped_items = cat.filter(pl.col("final") == "dropped").select("item")
    n = inter.height
    inter = inter.join(dropped_items, on="item", how="anti")
    if n - inter.height:
        drops["item dropped (image unreadable, no text)"] = n - inter.height
    seqs = inter.group_by("user", maintain_order=True).agg(pl.col("item"))
    short = seqs.filter(pl.col("item").list.len() < MIN_SEQUENCE)
    if short.height:
        drops[f"user left with fewer than {MIN_SEQUENCE} interactions"] = int(short["item"].list.len().sum())
    seqs = seqs.filter(pl.col("item").list.len() >= MIN_SEQUENCE)
    if seqs.height == 0:
        raise TransrecError(f"{proc}: no user has {MIN_SEQUENCE} usable interactions; nothing to split")
    table = seqs.select(
        "user",
        pl.col("item").list.slice(0, pl.col("item").list.len() - 2).alias("train"),
        pl.col("item").list.get(-2).alias("valid"),
        pl.col("item").list.get(-1).alias("test"),
    )
    write_parquet(proc / SPLIT, table)
    catalog = cat.select("item", "key", "title", pl.col("final").alias("modality"), "image_row",
                         (pl.col("text").fill_null("") != "").alias("has_text"))
    write_parquet(proc / CATALOG, catalog)

    lengths = table["train"].list.len() + 2
    split_stats = {
        "users": table.height,
        "interactions": int(lengths.sum()),
        "dropped": drops,
        "modality_fallbacks": fallbacks,
        "catalog": dict(sorted(catalog.group_by("modality").len().iter_rows())),
        "sequence_length": {"mean": round(float(lengths.mean()), 3), "median": float(lengths.median()),
                            "max": int(lengths.max())},
        "density": round(int(lengths.sum()) / (table.height * max(1, catalog.filter(pl.col("modality") != "dropped").height)), 6),
    }
    write_json(step_stats(proc, "split"), split_stats)
    stats = {step: json.loads(step_stats(proc, step).read_text())
             for step in ("clean", "resize", "tokenize") if step_stats(proc, step).is_file()}
    stats["split"] = split_stats
    write_json(proc / STATS, stats)
    return stats
