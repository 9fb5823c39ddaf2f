"""NineRec (westlake-repl/NineRec): nine downstream datasets and the Bili_500K / Bili_2M sources.

One folder per dataset, named by the dataset (Bili_Food, Bili_Movie, Bili_Cartoon, Bili_Dance,
Bili_Music, KU, QB, TN, DY, Bili_500K, Bili_2M); point location.path at that folder:

    <dataset>_pair.csv      item_id,user_id,timestamp   (no header; one row per click)
    <dataset>_item.csv      item_id,title,title_en      (no header; Chinese title, English title)
    <dataset>_cover/<item_id>.jpg
    or, instead of the pairs: <dataset>_behaviour.tsv   user<TAB>item item ... (chronological)

Verified against the repository's scripts: get_behaviour.py reads `Bili_2M_pair.csv` with
header=None and names the columns video_id, user_id, timestamp, and writes `Bili_2M_behaviour.tsv`;
get_lmdb.py reads `Bili_2M_item.csv` (header=None, id in column 0) and covers from
`Bili_2M_cover/<id>.jpg`; the text baselines read the item csv as video_id, title, title_en.
Assumptions (the archive itself could not be inspected): the other datasets follow the same
`<dataset>_pair.csv` / `_item.csv` / `_cover` naming; a header row, if a file has one, is detected
(`header: auto`) and skipped; timestamps are unix seconds or milliseconds (`time_unit: auto`).
With the behaviour tsv the timestamp is the position in the user's line.

Item text: `text_fields` (default the English title, which the offline English tokenizer reads;
use ["title"] for the Chinese one with a Chinese tokenizer).
The data is on Google Drive (URL), which transrec cannot download: fetch it in a browser.
"""
from __future__ import annotations

from pathlib import Path

from transrec.platforms.base import RawPlatform
from transrec.platforms.common import read_westlake

URL = "https://drive.google.com/file/d/1C58i4o4S-Bxwu3MgqQn7S0lHGzg5BgV6/view?usp=sharing"
MANUAL_DOWNLOAD = (f"download NineRec from {URL} (Google Drive, in a browser; linked from "
                   f"https://github.com/westlake-repl/NineRec), unpack it and place one dataset's folder "
                   f"(<name>_pair.csv, <name>_item.csv, <name>_cover/) there")
LAYOUT = {
    "dataset": "auto",                     # auto: the one <dataset>_pair.csv (or _behaviour.tsv) in the folder
    "pairs": "{dataset}_pair.csv",
    "sequences": "{dataset}_behaviour.tsv",
    "pairs_format": "auto",                # auto: the pairs csv when present, else the sequences tsv
    "pair_columns": ["item_id", "user_id", "timestamp"],   # the pairs csv's columns, in file order
    "user_col": "user_id",
    "item_col": "item_id",
    "time_col": "timestamp",
    "time_unit": "auto",                   # s | ms | auto
    "items": "{dataset}_item.csv",
    "item_columns": ["item_id", "title", "title_en"],      # the item csv's columns, in file order
    "item_id_col": "item_id",
    "title_field": "title_en",
    "text_fields": ["title_en"],
    "covers": "{dataset}_cover",
    "image_ext": "jpg",
    "header": "auto",                      # auto | true | false (both csv files)
}


def read(root: Path, layout: dict | None) -> RawPlatform:
    return read_westlake("ninerec", "NineRec", LAYOUT, root, layout)
