"""Generic csv layout: what any user can export their own platform to.

    <folder>/interactions.csv   user_id,item_id,timestamp     (timestamp: integer seconds)
    <folder>/items.csv          item_id,title[,text][,modality]
    <folder>/images/<item_id>.jpg                               (optional; missing = no image)

Column names, file names, the separator and the image extension are layout keys in params.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from transrec.platforms.base import RawPlatform, require_file
from transrec.platforms.common import read_csv
from transrec.platforms.layout import resolve_layout

URL = None  # a user's own export: there is nothing to download
LAYOUT = {
    "interactions": "interactions.csv",
    "items": "items.csv",
    "images": "images",
    "image_ext": "jpg",
    "separator": ",",
    "encoding": "utf-8",    # of both files (e.g. latin-1 for an old export)
    "user_col": "user_id",
    "item_col": "item_id",
    "time_col": "timestamp",
    "title_col": "title",
    "text_col": None,       # a longer description appended to the title, if the export has one
    "modality_col": None,   # declared modality per item (text | image | both), if the export has one
}


def read(root: Path, layout: dict | None) -> RawPlatform:
    lay = resolve_layout("csv", LAYOUT, layout)
    quarantine: list[dict] = []
    # read_csv: polars for a plain file, the row-by-row reader (read_table) only where quoting or a malformed
    # line needs it. read_table alone held every field as a Python string: 1.35 GB of peak memory for 2.4M
    # interactions, ~10x the file, and ~13 GB at Bili_2M's 25M (benchmarks/scale.py)
    inter = read_csv(require_file(root / lay["interactions"], "interactions file"), "interactions",
                     [lay["user_col"], lay["item_col"], lay["time_col"]], separator=lay["separator"],
                     encoding=lay["encoding"], quarantine=quarantine)
    inter = inter.rename({lay["user_col"]: "user", lay["item_col"]: "item", lay["time_col"]: "timestamp"})
    item_cols = [lay["item_col"], lay["title_col"]] + [c for c in (lay["text_col"], lay["modality_col"]) if c]
    items = read_csv(require_file(root / lay["items"], "items file"), "items", item_cols, separator=lay["separator"],
                     encoding=lay["encoding"], quarantine=quarantine)
    items = items.rename({lay["item_col"]: "item", lay["title_col"]: "title"})
    text = pl.col(lay["text_col"]) if lay["text_col"] else pl.lit("")
    modality = pl.col(lay["modality_col"]) if lay["modality_col"] else pl.lit(None, pl.String)
    image_dir = (root / lay["images"]).resolve()
    has_images = image_dir.is_dir()
    items = items.select(
        "item", "title",
        pl.concat_str([pl.col("title"), text], separator=". ").str.strip_chars(". ").alias("text"),
        (pl.lit(str(image_dir) + "/") + pl.col("item") + pl.lit("." + lay["image_ext"])).alias("image")
        if has_images else pl.lit(None, pl.String).alias("image"),
        modality.alias("modality"),
    )
    return RawPlatform(inter, items, quarantine)
