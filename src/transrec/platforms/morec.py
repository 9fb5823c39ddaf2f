"""The MoRec / IISAN / Adapter4Rec layout (Amazon and other text platforms as those projects publish them).

    users.tsv   user_id<TAB>item item item ...   one line per user, items in chronological order (no
                                                 timestamps: the position in the line is the time)
    items.tsv   item_id<TAB>title                no header; raw titles

The titles are as scraped: HTML entities (`&amp;`), csv-style quoting (`"20"" Ride Cymbal"` is the
title `20" Ride Cymbal`) and leading spaces. `read` unescapes the entities, undoes the quoting and
strips the spaces; the item file is split on its first tab only (a title may hold anything else).
Repeats of an item within a line are kept here and handled by `data.dedup` like every adapter's.

`exclude_users_of`: the users file of another platform (a path, relative to this platform's folder
or absolute); users that occur in it are left out and counted. Two Amazon categories share reviewers
(249 between Instrument and Scientific): a transfer study with no shared users drops them from one side.

Verified on the files of GAIR-Lab/IISAN `Dataset/` (Scientific, Instrument). The layout has no single
archive: place users.tsv and items.tsv in one folder per platform.
"""
from __future__ import annotations

import html
from pathlib import Path

import polars as pl

from transrec.errors import TransrecError
from transrec.platforms.base import RawPlatform, require_file
from transrec.platforms.common import read_sequences
from transrec.platforms.layout import resolve_layout

URL = "https://github.com/GAIR-Lab/IISAN"
MANUAL_DOWNLOAD = f"place users.tsv and items.tsv of the platform (e.g. {URL}, Dataset/<name>/) there"
LAYOUT = {
    "users": "users.tsv",           # user<TAB>space-separated items, chronological
    "items": "items.tsv",           # item<TAB>title, no header
    "exclude_users_of": None,       # another platform's users file: its users are dropped here
}


def clean_title(raw: str) -> str:
    """A scraped title as a person reads it: csv quoting undone, HTML entities unescaped, spaces stripped."""
    title = raw.strip()
    if len(title) >= 2 and title[0] == '"' and title[-1] == '"':
        title = title[1:-1].replace('""', '"')
    return " ".join(html.unescape(title).split())


def read_items(path: Path, quarantine: list[dict]) -> pl.DataFrame:
    require_file(path, "item titles file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise TransrecError(f"{path}: not utf-8 text ({exc.reason} at byte {exc.start})") from None
    keys, titles, rows = [], [], []
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        key, tab, title = line.partition("\t")
        if not tab or not key.strip():
            quarantine.append({"table": "items", "file": path.name, "line": line_no,
                               "reason": "expected item<TAB>title", "raw": line[:500]})
            continue
        keys.append(key.strip())
        titles.append(clean_title(title))
        rows.append(line_no - 1)
    frame = pl.DataFrame({"item": keys, "title": titles, "row": rows},
                         schema={"item": pl.String, "title": pl.String, "row": pl.Int64})
    return frame.select("item", "title", pl.col("title").alias("text"), pl.lit(None, pl.String).alias("image"),
                        pl.lit(None, pl.String).alias("modality"))


def read(root: Path, layout: dict | None) -> RawPlatform:
    lay = resolve_layout("morec", LAYOUT, layout)
    quarantine: list[dict] = []
    inter = read_sequences(root / lay["users"], quarantine)
    items = read_items(root / lay["items"], quarantine)
    drops: dict[str, int] = {}
    if lay["exclude_users_of"]:
        other = Path(lay["exclude_users_of"])
        other = other if other.is_absolute() else root / other
        require_file(other, "users file named by layout.exclude_users_of")
        shared = read_sequences(other, [])["user"].unique()
        keep = ~inter["user"].is_in(shared.implode())
        drops[f"user also in {other.name} of {other.parent.name} (exclude_users_of)"] = int((~keep).sum())
        inter = inter.filter(keep)
    return RawPlatform(inter, items, quarantine, drops)
