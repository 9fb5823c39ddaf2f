"""MovieLens in the GroupLens layouts (ml-100k and ml-1m), with optional posters and overviews.

    ml-100k: u.data (user \\t item \\t rating \\t timestamp), u.item (pipe-separated, latin-1)
    ml-1m:   ratings.dat (user::movie::rating::timestamp), movies.dat (movie::title::genres, latin-1)
    optional: posters/<movie_id>.jpg, overviews.tsv (movie_id \\t overview, with a header)

Every rating counts as one interaction (implicit feedback), unless layout.min_rating says otherwise.
Item text is the title plus genres (and the overview when use_overview is on; titles are the
reliable field, overviews are matched to films automatically and sometimes wrongly).
"""
from __future__ import annotations

from pathlib import Path

import polars as pl

from transrec.errors import TransrecError
from transrec.platforms.base import RawPlatform, read_table, require_file
from transrec.platforms.layout import resolve_layout

URLS = {
    "100k": "https://files.grouplens.org/datasets/movielens/ml-100k.zip",
    "1m": "https://files.grouplens.org/datasets/movielens/ml-1m.zip",
}
URL = URLS["100k"]
LAYOUT = {
    "variant": "auto",          # auto | 100k | 1m (auto: by which files are present)
    "posters": "posters",       # folder of <movie_id>.jpg; absent = text-only items
    "overviews": "overviews.tsv",
    "use_overview": False,
    "use_genres": True,
    "min_rating": 0,            # keep ratings >= this (0 keeps every rating)
    # Splitting one MovieLens into two platforms with no shared users and no shared items:
    "user_half": None,          # 0 | 1: keep users with an even (0) or odd (1) id
    "genre_group": None,        # list of genres: keep movies whose first listed genre is one of them
}
GENRES_100K = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
               "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi",
               "Thriller", "War", "Western"]


def _variant(root: Path, requested: str) -> str:
    if requested != "auto":
        return requested
    if (root / "u.data").is_file():
        return "100k"
    if (root / "ratings.dat").is_file():
        return "1m"
    raise TransrecError(f"{root}: neither u.data (ml-100k) nor ratings.dat (ml-1m) found; "
                        f"unpack {URLS['100k']} or {URLS['1m']} there")


def read(root: Path, layout: dict | None) -> RawPlatform:
    lay = resolve_layout("movielens", LAYOUT, layout)
    variant = _variant(root, lay["variant"])
    quarantine: list[dict] = []
    if variant == "100k":
        inter = read_table(require_file(root / "u.data", "ratings file u.data"), "interactions",
                           ["user", "item", "rating", "timestamp"],
                           separator="\t", has_header=False, quarantine=quarantine)
        cols = ["item", "title", "release", "video", "url"] + [f"g{i}" for i in range(len(GENRES_100K))]
        raw_items = read_table(require_file(root / "u.item", "movie file u.item"), "items", cols, separator="|",
                               has_header=False, encoding="latin-1", quarantine=quarantine)
        genres = pl.concat_str([pl.when(pl.col(f"g{i}") == "1").then(pl.lit(g)) for i, g in enumerate(GENRES_100K)],
                               separator=", ", ignore_nulls=True)
        items = raw_items.select("item", "title", genres.alias("genres"))
    else:
        inter = read_table(require_file(root / "ratings.dat", "ratings file ratings.dat"), "interactions",
                           ["user", "item", "rating", "timestamp"], separator="::", has_header=False,
                           quarantine=quarantine)
        items = read_table(require_file(root / "movies.dat", "movie file movies.dat"), "items", ["item", "title", "genres"],
                           separator="::", has_header=False, encoding="latin-1", quarantine=quarantine)
        items = items.with_columns(pl.col("genres").str.replace_all("|", ", ", literal=True))

    drops: dict[str, int] = {}
    if lay["min_rating"] > 0:
        rating = inter["rating"].cast(pl.Float64, strict=False)
        keep = rating >= lay["min_rating"]
        drops[f"rating below {lay['min_rating']}"] = int((~keep).sum())
        inter = inter.filter(keep)
    if lay["user_half"] is not None:
        parity = inter["user"].cast(pl.Int64, strict=False) % 2
        keep = (parity == int(lay["user_half"])).fill_null(False)
        drops[f"user outside user_half {lay['user_half']}"] = int((~keep).sum())
        inter = inter.filter(keep)
    if lay["genre_group"] is not None:
        group = set(lay["genre_group"])
        first = items["genres"].fill_null("").str.split(", ").list.first()
        in_group = items.filter(first.is_in(list(group)))
        keep = inter["item"].is_in(in_group["item"].implode())
        drops["movie outside genre_group"] = int((~keep).sum())
        inter, items = inter.filter(keep), in_group
    inter = inter.select("user", "item", "timestamp", "row")

    text_parts = [pl.col("title")]
    if lay["use_genres"]:
        text_parts.append(pl.col("genres"))
    overviews = root / lay["overviews"]
    if lay["use_overview"]:
        ov = read_table(require_file(overviews, "overviews file"), "items", ["movie_id", "overview"], separator="\t",
                        quarantine=quarantine).select(pl.col("movie_id").alias("item"), "overview")
        items = items.join(ov.unique("item", keep="first"), on="item", how="left")
        text_parts.append(pl.col("overview"))
    posters = root / lay["posters"]
    image = (pl.lit(str(posters.resolve()) + "/") + pl.col("item") + pl.lit(".jpg")) if posters.is_dir() \
        else pl.lit(None, pl.String)
    items = items.select(
        "item", "title",
        # Empty fields are nulls here, so a movie with no title, genres or overview has no text at all.
        pl.concat_str([pl.when(part.str.strip_chars() != "").then(part) for part in text_parts],
                      separator=". ", ignore_nulls=True).alias("text"),
        image.alias("image"),
        pl.lit(None, pl.String).alias("modality"),
    )
    return RawPlatform(inter, items, quarantine, drops)
