"""The MovieLens adapter on the real GroupLens ml-100k files (with TMDB posters), through the real CLI.

The data is read where it lies (../shared/data/ml-100k, or $TRANSREC_ML100K) and never copied into
the repository; the test skips when it is absent.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import polars as pl
import pytest
import yaml

from transrec.cli import main

REPO = Path(__file__).resolve().parents[1]


def ml100k() -> Path | None:
    candidates = [Path(__file__).resolve().parents[2] / "shared" / "data" / "ml-100k"]
    if os.environ.get("TRANSREC_ML100K"):
        candidates.append(Path(os.environ["TRANSREC_ML100K"]).expanduser())
    for path in candidates:
        if (path / "u.data").is_file() and (path / "u.item").is_file():
            return path
    return None


DATA = ml100k()
pytestmark = pytest.mark.skipif(DATA is None, reason="GroupLens ml-100k not found (../shared/data/ml-100k or "
                                                    "$TRANSREC_ML100K)")


def test_real_ml100k_counts_posters_and_accounting(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = yaml.safe_load((REPO / "params.yaml").read_text())["data"]
    settings["image"]["size"] = 32
    settings["text"].update(tokenizer="minilm", max_len=16)
    settings["filter"].update(min_user_len=3, k_core=0)
    settings["modality"]["policy"] = "both"
    params = {"seed": 0, "paths": {"data": "data", "results": "results"}, "data": settings,
              "platforms": {"ml": {"adapter": "movielens", "location": {"path": str(DATA)}}}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for step in ("download", "clean", "resize", "tokenize", "split"):
        assert main([step, "ml"]) == 0, step

    proc = tmp_path / "data" / "processed" / "ml"
    stats = json.loads((proc / "stats.json").read_text())
    c = stats["clean"]
    # GroupLens: 100,000 ratings by 943 users on 1,682 movies, every user with >= 20 ratings
    assert c["interactions"]["read"] == 100_000
    assert c["interactions"]["quarantined"] == 0
    assert c["interactions"]["accounted"] is True
    assert c["interactions"]["read"] == c["interactions"]["kept"] + sum(c["interactions"]["dropped"].values())
    assert c["users"]["distinct"] == 943 and c["users"]["kept"] == 943
    assert c["items"]["read"] == 1682 and c["items"]["distinct"] == 1682 and c["items"]["quarantined"] == 0

    # posters: an item shows an image (image/both) exactly when its poster file is there
    posters = DATA / "posters"
    assert sum(1 for p in posters.glob("*.jpg")) == 1663
    items = pl.read_parquet(proc / "items.parquet")
    with_poster = sum(1 for key in items["key"].to_list() if (posters / f"{key}.jpg").is_file())
    shown = items.filter(pl.col("modality").is_in(["image", "both"])).height
    assert shown == with_poster
    assert c["items"]["modality"].get("both", 0) + c["items"]["modality"].get("image", 0) == with_poster
    assert c["items"]["modality"].get("text", 0) == items.height - with_poster   # every movie has a title

    r = stats["resize"]
    assert r["requested"] == with_poster and r["ok"] + r["corrupt"] + r["missing"] == r["requested"]
    assert stats["split"]["catalog"].get("both", 0) == r["ok"]
    # the split keeps every kept interaction, minus counted drops
    assert stats["split"]["interactions"] == c["interactions"]["kept"] - sum(stats["split"]["dropped"].values())
    assert stats["split"]["users"] == 943


def test_two_platforms_from_one_movielens_share_no_users_or_items(tmp_path, monkeypatch):
    """user_half + genre_group split ML-100K into disjoint platforms; every row is accounted for."""
    monkeypatch.chdir(tmp_path)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    params["data"]["filter"]["min_user_len"] = 3
    groups = {"a": (0, ["Action", "Adventure", "Animation", "Children's", "Comedy", "Crime"]),
              "b": (1, ["Documentary", "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance",
                        "Sci-Fi", "Thriller", "War", "Western", "unknown"])}
    params["platforms"] = {name: {"adapter": "movielens", "location": {"path": str(DATA)},
                                  "layout": {"user_half": half, "genre_group": genres, "posters": "no-posters"}}
                           for name, (half, genres) in groups.items()}
    params.pop("study", None)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    for name in groups:
        assert main(["download", name]) == 0 and main(["clean", name]) == 0
    users = {n: set(pl.read_parquet(tmp_path / f"data/processed/{n}/users.parquet")["key"]) for n in groups}
    items = {n: set(pl.read_parquet(tmp_path / f"data/processed/{n}/items.parquet")["key"]) for n in groups}
    assert users["a"] and users["b"] and not users["a"] & users["b"]
    assert items["a"] and items["b"] and not items["a"] & items["b"]
    for n in groups:
        stats = json.loads((tmp_path / f"data/processed/{n}/stats/clean.json").read_text())
        assert stats["interactions"]["read"] == 100_000 and stats["interactions"]["accounted"]
        dropped = stats["interactions"]["dropped"]
        assert dropped[f"user outside user_half {groups[n][0]}"] > 0 and dropped["movie outside genre_group"] > 0
