"""PixelRec (westlake-repl/PixelRec): Pixel200K, Pixel1M, Pixel8M, PixelRec (and the PixelRec50K sample).

    dataset/<dataset>.csv       item_id,user_id,timestamp     (the "Interaction" download; header row)
    information/<dataset>.csv   item_id,view_number,comment_number,thumbup_number,share_number,
                                coin_number,favorite_number,barrage_number,title,tag,description
                                (the "Item Information" download; header row; same file name)
    cover/<item_id>.jpg         (the "Cover" download; ids like i0 .. i408373)

Verified: PixelRec's code reads `<data_path>/<dataset>.csv` with columns item_id, user_id, timestamp
(REC/data/dataload.py; data_path ../dataset/ in overall/ID.yaml) and dataset/readme.md lists the
item-information columns (a version also has title_en). Assumptions: the interaction and item files
share their name, so they sit in two folders, `dataset/` (as in PixelRec's code) and `information/`
(as in the public HLLM code that reads PixelRec); the covers unpack to `cover/` (PixelRec's own
generate_lmdb.py reads `images/`: set layout.covers: images for that). Timestamps are unix seconds
(ms are detected and converted, `time_unit: auto`).

Item text: title, tag and description joined (`text_fields`). The files are on Google Drive
(linked from URL), which transrec cannot download: fetch them in a browser.
"""
from __future__ import annotations

from pathlib import Path

from transrec.platforms.base import RawPlatform
from transrec.platforms.common import read_westlake

URL = "https://github.com/westlake-repl/PixelRec#dataset"
MANUAL_DOWNLOAD = (f"download the Interaction, Item Information and Cover files of PixelRec from the Google Drive "
                   f"links at {URL} and place them there as dataset/<name>.csv, information/<name>.csv and cover/")
LAYOUT = {
    "dataset": "auto",                     # auto: the one dataset/<dataset>.csv (Pixel200K, Pixel1M, ...)
    "pairs": "dataset/{dataset}.csv",
    "sequences": None,
    "pairs_format": "csv",
    "pair_columns": ["item_id", "user_id", "timestamp"],
    "user_col": "user_id",
    "item_col": "item_id",
    "time_col": "timestamp",
    "time_unit": "auto",
    "items": "information/{dataset}.csv",
    "item_columns": ["item_id", "view_number", "comment_number", "thumbup_number", "share_number", "coin_number",
                     "favorite_number", "barrage_number", "title", "tag", "description"],
    "item_id_col": "item_id",
    "title_field": "title",
    "text_fields": ["title", "tag", "description"],
    "covers": "cover",
    "image_ext": "jpg",
    "header": "auto",
}


def read(root: Path, layout: dict | None) -> RawPlatform:
    return read_westlake("pixelrec", "PixelRec", LAYOUT, root, layout)
