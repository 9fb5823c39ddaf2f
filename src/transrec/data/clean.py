"""clean: from an adapter's raw tables to typed, ordered, filtered, densely indexed tables.

Every row that does not make it is either quarantined (could not be parsed: quarantine.parquet with
the reason and the raw text) or dropped by a counted reason in stats; `stats["interactions"]`
satisfies read == kept + sum(dropped) + quarantined, which the tests check.

Order within a user: by timestamp, ties broken by `tie_break`: `item_key` (numeric when every key
is an integer, else lexicographic; the default) or `source_row` (the row order of the source file).
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import polars as pl

from transrec.atomic import write_json, write_parquet
from transrec.errors import TransrecError
from transrec.platforms import read_platform
from transrec.paths import INTERACTIONS, ITEMS, QUARANTINE, USERS, step_stats

MODALITIES = ("text", "image", "both")


def _count_drop(drops: dict, reason: str, n: int) -> None:
    if n:
        drops[reason] = drops.get(reason, 0) + int(n)


def _sort_key(keys: pl.Series) -> pl.Series:
    """Integer keys sort numerically (MovieLens 9 < 10), anything else lexicographically."""
    as_int = keys.cast(pl.Int64, strict=False)
    return as_int if as_int.null_count() == 0 else keys


def _stable_fraction(keys: pl.Series, seed: int) -> pl.Series:
    """A per-key number in [0, 1) that depends only on (seed, key): the same item always gets it."""
    values = [int.from_bytes(hashlib.blake2b(f"{seed}:{k}".encode(), digest_size=8).digest(), "little") / 2**64
              for k in keys.to_list()]
    return pl.Series(values, dtype=pl.Float64)


def _type_interactions(raw: pl.DataFrame, quarantine: list[dict], file: str) -> pl.DataFrame:
    frame = raw.with_columns(
        pl.col("user").cast(pl.String).str.strip_chars(),
        pl.col("item").cast(pl.String).str.strip_chars(),
        pl.col("timestamp").cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
        .cast(pl.Int64, strict=False).alias("ts"),
    )
    bad = frame.filter((pl.col("user") == "") | pl.col("user").is_null() | (pl.col("item") == "")
                       | pl.col("item").is_null() | pl.col("ts").is_null())
    for rec in bad.iter_rows(named=True):
        reason = "empty user id" if not rec["user"] else "empty item id" if not rec["item"] else "bad timestamp"
        quarantine.append({"table": "interactions", "file": file, "line": None, "reason": reason,
                           "raw": f"row {rec['row']}: {rec['user']},{rec['item']},{rec['timestamp']}"})
    good = frame.join(bad.select("row"), on="row", how="anti")
    return good.select("user", "item", pl.col("ts").alias("timestamp"), "row")


def _resolve_modality(items: pl.DataFrame, policy: str, image_fraction: float, seed: int,
                      item_drops: dict, fallbacks: dict) -> pl.DataFrame:
    """Decide each item's modality from the policy and from what the item really has."""
    has_text, has_image = pl.col("has_text"), pl.col("has_image")
    own = (pl.when(has_text & has_image).then(pl.lit("both"))
           .when(has_text).then(pl.lit("text")).when(has_image).then(pl.lit("image")).otherwise(None))
    if policy == "as_is":
        wanted = pl.coalesce(pl.col("declared"), own)
    elif policy in ("text", "image"):
        wanted = pl.lit(policy)
    elif policy == "both":
        wanted = own
    else:  # mixed: a two-modality item shows ONE modality, chosen by a stable per-item draw
        frac = _stable_fraction(items["item"], seed)
        items = items.with_columns(frac.alias("draw"))
        wanted = pl.when(has_text & has_image).then(
            pl.when(pl.col("draw") < image_fraction).then(pl.lit("image")).otherwise(pl.lit("text"))).otherwise(own)
    items = items.with_columns(wanted.alias("wanted"))
    can = {"text": has_text, "image": has_image, "both": has_text & has_image}
    ok = (pl.when(pl.col("wanted") == "text").then(can["text"])
          .when(pl.col("wanted") == "image").then(can["image"])
          .when(pl.col("wanted") == "both").then(can["both"]).otherwise(False))
    # An image that is not there falls back to the text; a forced text-only platform drops image-only items.
    fallback = (pl.when(ok).then(pl.col("wanted"))
                .when((pl.col("wanted") == "both") & has_text).then(pl.lit("text"))
                .when((pl.col("wanted") == "both") & has_image).then(pl.lit("image"))
                .when((pl.col("wanted") == "image") & has_text).then(pl.lit("text"))
                .when((pl.col("wanted") == "text") & has_image & (pl.lit(policy) != "text")).then(pl.lit("image"))
                .otherwise(None))
    items = items.with_columns(fallback.alias("modality"))
    moved = items.filter(pl.col("modality").is_not_null() & (pl.col("modality") != pl.col("wanted")))
    for w, m, n in moved.group_by("wanted", "modality").len().sort("wanted", "modality").iter_rows():
        fallbacks[f"{w} -> {m}"] = n
    _count_drop(item_drops, "no usable content for the modality policy", items["modality"].null_count())
    return items.filter(pl.col("modality").is_not_null()).drop("wanted", "draw", strict=False)


def _k_core(inter: pl.DataFrame, min_user_len: int, k: int, drops: dict) -> pl.DataFrame:
    """Iteratively drop short users (and, with k > 0, rare items) until stable; count each reason."""
    while True:
        before = inter.height
        user_len = inter.group_by("user").len()
        short = user_len.filter(pl.col("len") < max(min_user_len, k))
        if short.height:
            n = inter.join(short.select("user"), on="user", how="semi").height
            _count_drop(drops, f"user history shorter than {max(min_user_len, k)}", n)
            inter = inter.join(short.select("user"), on="user", how="anti")
        if k > 0:
            rare = inter.group_by("item").len().filter(pl.col("len") < k)
            if rare.height:
                n = inter.join(rare.select("item"), on="item", how="semi").height
                _count_drop(drops, f"item with fewer than {k} interactions (k-core)", n)
                inter = inter.join(rare.select("item"), on="item", how="anti")
        if inter.height == before:
            return inter


def clean(cfg: dict, root: Path, out_dir: Path, seed: int) -> dict:
    raw = read_platform(cfg["adapter"], root, cfg.get("layout"))
    quarantine = list(raw.quarantine)
    inter_drops: dict[str, int] = dict(raw.drops)
    item_drops: dict[str, int] = {}
    fallbacks: dict[str, int] = {}

    inter_rows_read = raw.interactions.height + sum(1 for q in quarantine if q["table"] == "interactions") \
        + sum(raw.drops.values())
    item_rows_read = raw.items.height + sum(1 for q in quarantine if q["table"] == "items")
    inter = _type_interactions(raw.interactions, quarantine, "interactions")
    raw_users = inter["user"].n_unique()

    # Items: typed, keys unique, content checked on disk.
    items = raw.items.with_columns(
        pl.col("item").cast(pl.String).str.strip_chars(),
        pl.col("title").cast(pl.String).fill_null("").str.strip_chars(),
        pl.col("text").cast(pl.String).fill_null("").str.strip_chars(),
        pl.col("image").cast(pl.String),
        pl.col("modality").cast(pl.String).str.strip_chars().str.to_lowercase().alias("declared"),
    ).drop("modality")
    empty_key = items.filter(pl.col("item").is_null() | (pl.col("item") == ""))
    for _ in range(empty_key.height):
        quarantine.append({"table": "items", "file": "items", "line": None, "reason": "empty item id", "raw": ""})
    items = items.filter(pl.col("item").is_not_null() & (pl.col("item") != ""))
    _count_drop(item_drops, "duplicate item row", items.height - items["item"].n_unique())
    items = items.unique("item", keep="first", maintain_order=True)
    raw_items = items.height
    bad_declared = items.filter(pl.col("declared").is_not_null() & ~pl.col("declared").is_in(MODALITIES))
    if bad_declared.height:
        fallbacks["unknown declared modality -> by content"] = bad_declared.height
        items = items.with_columns(pl.when(pl.col("declared").is_in(MODALITIES)).then(pl.col("declared")).alias("declared"))
    exists = [p is not None and os.path.isfile(p) for p in items["image"].to_list()]
    # A missing file counts only where an image was expected: a layout gives every item an image path,
    # but an item the source declares text-only is not missing anything.
    image_missing = sum(1 for p, e, d in zip(items["image"].to_list(), exists, items["declared"].to_list())
                        if p is not None and not e and d != "text")
    items = items.with_columns(
        pl.Series("has_image", exists, dtype=pl.Boolean),
        (pl.col("text") != "").alias("has_text"),
    ).with_columns(pl.when(pl.col("has_image")).then(pl.col("image")).alias("image"))
    items = _resolve_modality(items, cfg["modality"]["policy"], cfg["modality"]["image_fraction"], seed,
                              item_drops, fallbacks)

    # Interactions: known items only, de-duplicated, ordered, filtered.
    n = inter.height
    inter = inter.join(raw.items.select(pl.col("item").cast(pl.String).str.strip_chars()).unique(), on="item", how="semi")
    _count_drop(inter_drops, "unknown item id", n - inter.height)
    n = inter.height
    inter = inter.join(items.select("item"), on="item", how="semi")
    _count_drop(inter_drops, "item dropped (no usable content)", n - inter.height)

    tie = "item_order" if cfg["tie_break"] == "item_key" else "row"
    inter = inter.with_columns(_sort_key(inter["item"]).alias("item_order")) if tie == "item_order" else inter
    inter = inter.sort(["user", "timestamp", tie, "row"])
    n = inter.height
    inter = inter.unique(["user", "item", "timestamp"], keep="first", maintain_order=True)
    _count_drop(inter_drops, "duplicate interaction (same user, item, timestamp)", n - inter.height)
    if cfg["dedup"] == "user_item":
        n = inter.height
        inter = inter.unique(["user", "item"], keep="first", maintain_order=True)
        _count_drop(inter_drops, "repeat of a user-item pair (dedup: user_item)", n - inter.height)
    inter = _k_core(inter, cfg["filter"]["min_user_len"], cfg["filter"]["k_core"], inter_drops)
    if inter.height == 0:
        raise TransrecError(f"platform {cfg['name']}: no interactions left after cleaning "
                            f"(dropped: {inter_drops}); check the data and filter.min_user_len")

    # Catalogue: items that still have interactions, densely indexed in key order.
    n_items_before = items.height
    items = items.join(inter.select("item").unique(), on="item", how="semi")
    _count_drop(item_drops, "no interactions after filtering", n_items_before - items.height)
    # keys equal as numbers ("007", "7") are ordered by their text: the index never depends on sort luck
    items = items.with_columns(_sort_key(items["item"]).alias("_k")).sort("_k", "item").drop("_k")
    items = items.with_row_index("item_idx").with_columns(pl.col("item_idx").cast(pl.Int32))
    users = inter.select("user").unique()
    users = users.with_columns(_sort_key(users["user"]).alias("_k")).sort("_k", "user").drop("_k")
    users = users.with_row_index("user_idx").with_columns(pl.col("user_idx").cast(pl.Int32))
    inter = (inter.join(users, on="user").join(items.select("item", "item_idx"), on="item")
             .sort(["user_idx", "timestamp", tie, "row"]))

    out_dir.mkdir(parents=True, exist_ok=True)
    write_parquet(out_dir / INTERACTIONS,
                  inter.select(pl.col("user_idx").alias("user"), pl.col("item_idx").alias("item"), "timestamp"))
    write_parquet(out_dir / ITEMS,
                  items.select(pl.col("item_idx").alias("item"), pl.col("item").alias("key"), "title", "text",
                               "image", "modality"))
    write_parquet(out_dir / USERS, users.select(pl.col("user_idx").alias("user"), pl.col("user").alias("key")))
    quarantine_frame = pl.DataFrame(quarantine, schema={"table": pl.String, "file": pl.String, "line": pl.Int64,
                                                        "reason": pl.String, "raw": pl.String})
    write_parquet(out_dir / QUARANTINE, quarantine_frame)

    n_quarantined = quarantine_frame.filter(pl.col("table") == "interactions").height
    stats = {
        "platform": cfg["name"],
        "adapter": cfg["adapter"],
        "source": str(root),
        "tie_break": cfg["tie_break"],
        "interactions": {"read": inter_rows_read, "quarantined": n_quarantined,
                         "quarantine_reasons": _reasons(quarantine_frame, "interactions"),
                         "dropped": inter_drops, "kept": inter.height},
        "items": {"read": item_rows_read, "quarantined": quarantine_frame.filter(pl.col("table") == "items").height,
                  "quarantine_reasons": _reasons(quarantine_frame, "items"),
                  "distinct": raw_items, "image_missing": image_missing, "dropped": item_drops,
                  "modality_fallbacks": fallbacks, "kept": items.height,
                  "modality": dict(sorted(items.group_by("modality").len().iter_rows()))},
        "users": {"distinct": raw_users, "kept": users.height, "dropped": raw_users - users.height},
    }
    stats["interactions"]["accounted"] = (
        stats["interactions"]["read"] == inter.height + sum(inter_drops.values()) + n_quarantined)
    write_json(step_stats(out_dir, "clean"), stats)
    return stats


def _reasons(frame: pl.DataFrame, table: str) -> dict[str, int]:
    part = frame.filter(pl.col("table") == table)
    return {r: n for r, n in part.group_by("reason").len().sort("reason").iter_rows()}
