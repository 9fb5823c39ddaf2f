"""H&M Personalized Fashion Recommendations (Kaggle competition layout).

    transactions_train.csv  t_dat,customer_id,article_id,price,sales_channel_id   (t_dat: YYYY-MM-DD)
    articles.csv            article_id,product_code,prod_name,product_type_no,product_type_name,
                            product_group_name,...,colour_group_name,...,department_name,...,detail_desc
                            (detail_desc is free text with quoted commas)
    images/<first 3 digits>/<10-digit article id>.jpg    (most articles have one, some do not)

Article ids are 10-digit strings with a leading zero (0108775015). Files saved through tools that
read the id as a number lose the zero (108775015): every all-digit id in both files is zero-padded
back to `id_width` digits, so the two files and the image names agree.

Each purchase is one interaction; its timestamp is the day (00:00 UTC, unix seconds), because H&M
gives only the date. A customer's purchases of one day therefore share a timestamp and are ordered
by the configured tie rule (`data.tie_break`: item_key = by article id, source_row = file order).
Repeat purchases of an article are handled by `data.dedup` like any repeat.

Item text: the non-empty fields of `text_fields` joined by ". " (default: name, type, colour,
department, description); title: `title_field`. An article may lack text or an image; clean decides
its modality from what it has.

Kaggle downloads need an account that accepted the competition rules, so transrec cannot download
the data: download it from URL yourself and point location.path at the unpacked folder.
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from transrec.errors import TransrecError
from transrec.platforms.base import RawPlatform
from transrec.platforms.common import date_to_seconds, image_path, join_text, read_csv
from transrec.platforms.layout import resolve_layout

URL = "https://www.kaggle.com/competitions/h-and-m-personalized-fashion-recommendations/data"
MANUAL_DOWNLOAD = (f"Kaggle downloads need an account: sign in, accept the competition rules at {URL}, download "
                   f"transactions_train.csv, articles.csv and images/ and place them there by hand")
LAYOUT = {
    "transactions": "transactions_train.csv",
    "articles": "articles.csv",
    "images": "images",
    "image_ext": "jpg",
    "id_width": 10,   # article ids are zero-padded to this many digits (0 = keep as given)
    "title_field": "prod_name",
    "text_fields": ["prod_name", "product_type_name", "colour_group_name", "department_name", "detail_desc"],
}


def _normalise_id(column: str, width: int) -> pl.Expr:
    value = pl.col(column).str.strip_chars()
    if width <= 0:
        return value.alias(column)
    return pl.when(value.str.contains(r"^\d+$")).then(value.str.zfill(width)).otherwise(value).alias(column)


def _need(path: Path, what: str) -> Path:
    if not path.is_file():
        raise TransrecError(f"missing H&M {what}: {path} not found; {MANUAL_DOWNLOAD} (folder {path.parent})")
    return path


def read(root: Path, layout: dict | None) -> RawPlatform:
    lay = resolve_layout("hm", LAYOUT, layout)
    if not isinstance(lay["text_fields"], list) or not lay["text_fields"]:
        raise TransrecError("hm layout text_fields must be a non-empty list of articles.csv columns")
    text_fields = list(lay["text_fields"])
    quarantine: list[dict] = []
    width = int(lay["id_width"])

    inter = read_csv(_need(root / lay["transactions"], "transactions file"), "interactions",
                     ["customer_id", "article_id", "t_dat"], quarantine=quarantine)
    inter = inter.select(
        pl.col("customer_id").alias("user"),
        _normalise_id("article_id", width).alias("item"),
        date_to_seconds("t_dat").alias("timestamp"),
        "row",
    )

    item_cols = list(dict.fromkeys(["article_id", lay["title_field"], *text_fields]))
    articles = read_csv(_need(root / lay["articles"], "articles file"), "items", item_cols, quarantine=quarantine)
    articles = articles.with_columns(_normalise_id("article_id", width))
    folder = root / lay["images"]
    # images/010/0108775015.jpg: the sub-folder is the first three digits of the padded id
    name = pl.col("article_id").str.slice(0, 3) + pl.lit("/") + pl.col("article_id")
    items = articles.select(
        pl.col("article_id").alias("item"),
        pl.col(lay["title_field"]).alias("title"),
        join_text(text_fields).alias("text"),
        image_path(folder, name, lay["image_ext"]).alias("image"),
        pl.lit(None, pl.String).alias("modality"),
    )
    return RawPlatform(inter, items, quarantine)
