"""MicroLens (westlake-repl/MicroLens): MicroLens-50k / MicroLens-100k in the published layout.

    MicroLens-100k_pairs.csv       userID,videoID,timestamp   (header row; timestamps in ms or s)
    or MicroLens-100k_pairs.tsv    user<TAB>video video ...   (chronological; the README's form)
    MicroLens-100k_title_en.csv    item,title                 (no header; English titles)
    MicroLens-100k_covers/<video_id>.jpg

Verified: the dataset readme (pairs.tsv form; pairs.csv columns "userID", "videoID", "timestamp"),
the repository's IDRec/process_data.ipynb (tsv: user, tab, space-separated items; the position is
used as the timestamp), and public readers of MicroLens-100k_title_en.csv (header=None, id + title).
Assumptions: the covers folder name (`<dataset>_covers`, one <id>.jpg per video); timestamps that are
larger than 1e11 are milliseconds and become seconds (`time_unit: auto`), so clicks within one second
tie and are ordered by the configured tie rule. With the tsv form the timestamp is the position.
Set `layout.dataset` (default auto: the one <dataset>_pairs.csv/.tsv in the folder) for other names.

The files are individual downloads from URL (no single archive): fetch them into one folder.
"""
from __future__ import annotations

from pathlib import Path

from transrec.platforms.base import RawPlatform
from transrec.platforms.common import read_westlake

URL = "https://recsys.westlake.edu.cn/MicroLens-100k-Dataset/"
MANUAL_DOWNLOAD = (f"download MicroLens-100k_pairs.csv (or _pairs.tsv), MicroLens-100k_title_en.csv and the covers "
                   f"(MicroLens-100k_covers/) from {URL} and place them there")
LAYOUT = {
    "dataset": "auto",                     # auto: the one <dataset>_pairs.csv (or .tsv) in the folder
    "pairs": "{dataset}_pairs.csv",
    "sequences": "{dataset}_pairs.tsv",
    "pairs_format": "auto",                # auto: the csv when present, else the tsv
    "pair_columns": ["userID", "videoID", "timestamp"],   # the csv's columns, in file order
    "user_col": "userID",
    "item_col": "videoID",
    "time_col": "timestamp",
    "time_unit": "auto",                   # s | ms | auto
    "items": "{dataset}_title_en.csv",
    "item_columns": ["item", "title"],
    "item_id_col": "item",
    "title_field": "title",
    "text_fields": ["title"],
    "covers": "{dataset}_covers",
    "image_ext": "jpg",
    "header": "auto",                      # auto | true | false (both csv files)
}


def read(root: Path, layout: dict | None) -> RawPlatform:
    return read_westlake("microlens", "MicroLens", LAYOUT, root, layout)
