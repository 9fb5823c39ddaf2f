"""What the model is for: top-K recommendations for a history of item keys, and new items without retraining.

    transrec recommend --model M --platform P --history k1,k2,... [--k 10] [--json]
    transrec add-items --model M --platform P --items new.csv|new.parquet

M is a trained model folder (transrec.model.checkpoint; a run's folder names its model/ folder). P is a
processed platform from params: the one the model was trained on, or, for a content model, any other one
(zero-shot: the model encodes P's items).

New items (add-items): a table with `key` and at least one of `text` / `title` / `image` (a path);
an optional `modality` (text | image | both) says which inputs the model reads, otherwise an item with
an image is an image item and one without is a text item. They are tokenized and resized like the
platform's own items and encoded by the model's item tower, exactly as a catalogue item would be (a
content model has no per-item parameters), and stored in <model folder>/added/<P>.parquet; recommend
ranks them with the catalogue from then on. An unreadable image leaves a text item if it has text and
is dropped otherwise, counted and reported. ID models cannot take new items: they have no vector for them.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from transrec.atomic import write_parquet
from transrec.data.platform import DROPPED, MODALITY_CODES, PlatformData
from transrec.errors import TransrecError, first_line
from transrec.model.build import load_trained
from transrec.model.checkpoint import model_folder
from transrec.model.items import ItemFeatures
from transrec.paths import CATALOG
from transrec.runtime import local_device


@dataclass
class Catalogue:
    """A platform's items as one model sees them: keys, titles, modalities and vectors (added items last)."""

    keys: list[str]
    titles: list[str]
    modality: list[str]
    vectors: torch.Tensor          # [n, d]; rows of dropped items are never ranked
    rankable: torch.Tensor         # bool [n]
    n_catalogue: int               # the first n_catalogue rows are the processed catalogue

    def index(self, keys: list[str]) -> list[int]:
        where = {k: i for i, k in enumerate(self.keys)}  # an added item wins over a dropped catalogue row
        unknown = [k for k in keys if k not in where]
        if unknown:
            example = self.keys[0] if self.keys else "?"
            raise TransrecError(f"{len(unknown)} of {len(keys)} history keys are not items of this platform: "
                                f"{', '.join(unknown[:3])}{' ...' if len(unknown) > 3 else ''} (keys look like '{example}')")
        return [where[k] for k in keys]


def added_path(model: str | Path, platform: str) -> Path:
    """Items added to a platform for this model live in its folder (they travel with it)."""
    return model_folder(model) / "added" / f"{platform}.parquet"


def load(params: dict, model: str | Path, platform: str, device="cpu", bottoms: bool = False):
    """(model, platform data, payload) with the model pointed at `platform`'s items."""
    return load_trained(params, model, platform, device, bottoms)


def catalogue(net, data: PlatformData, added: Path | None) -> Catalogue:
    frame = pl.read_parquet(data.proc / CATALOG).sort("item")
    vectors = net.encode_catalog()
    keys, titles, modality = frame["key"].to_list(), frame["title"].fill_null("").to_list(), frame["modality"].to_list()
    rankable = torch.from_numpy(data.modality != DROPPED)
    if added is not None and added.is_file():
        extra = pl.read_parquet(added)
        keys += extra["key"].to_list()
        titles += extra["title"].fill_null("").to_list()
        modality += extra["modality"].to_list()
        vectors = torch.cat([vectors, torch.tensor(np.stack(extra["vector"].to_numpy()), dtype=vectors.dtype)])
        rankable = torch.cat([rankable, torch.ones(extra.height, dtype=torch.bool)])
    return Catalogue(keys, titles, modality, vectors, rankable, frame.height)


@torch.no_grad()
def scores_for(net, cat: Catalogue, history: list[int], mask: list[int] | None = None) -> torch.Tensor:
    """[n] scores of every row of `cat` for one history (item rows, oldest first); rows that cannot be
    recommended and the rows in `mask` get -inf."""
    n = net.cfg.user_encoder.max_len
    hist = torch.full((1, n), -1, dtype=torch.long)
    recent = history[-n:]
    hist[0, n - len(recent):] = torch.tensor(recent, dtype=torch.long)
    scores = (net.user_vectors(hist, cat.vectors) @ cat.vectors.T)[0]
    scores.masked_fill_(~cat.rankable, float("-inf"))
    if mask:
        scores[torch.tensor(mask, dtype=torch.long)] = float("-inf")
    return scores


def top_k(net, cat: Catalogue, history: list[int], k: int, exclude_history: bool = True) -> list[dict]:
    """The k best items for one history (item rows of `cat`), best first."""
    scores = scores_for(net, cat, history, history if exclude_history else None)
    k = min(k, int(torch.isfinite(scores).sum()))
    values, rows = scores.topk(k)
    return [{"rank": r + 1, "item": i, "key": cat.keys[i], "title": cat.titles[i], "modality": cat.modality[i],
             "score": round(float(v), 4), "new": i >= cat.n_catalogue}
            for r, (v, i) in enumerate(zip(values.tolist(), rows.tolist()))]


def sample_recommendations(net, data: PlatformData, split: str = "test", users: int = 4, k: int = 5,
                           seed: int = 0) -> list[dict]:
    """A few users' recent history and top-k (for W&B): rows with keys, titles, scores and image rows."""
    cat = catalogue(net, data, None)
    _, targets, seen = data.contexts(split, net.cfg.user_encoder.max_len)
    picked = np.random.default_rng(seed).choice(len(targets), size=min(users, len(targets)), replace=False)
    rows = []
    for u in sorted(picked.tolist()):
        history = seen.get(u).tolist()
        for rec in top_k(net, cat, history, k):
            rows.append({"user": str(data.users[u]), "history": " | ".join(cat.titles[i] for i in history[-3:]),
                         **rec, "hit": rec["item"] == int(targets[u]), "image_row": int(data.image_row[rec["item"]])})
    return rows


# ---- new items ----------------------------------------------------------------------------------------
def read_new_items(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise TransrecError(f"{path} not found")
    try:
        frame = pl.read_parquet(path) if path.suffix == ".parquet" else pl.read_csv(path, infer_schema_length=0)
    except Exception as exc:  # a malformed file
        raise TransrecError(f"{path}: cannot read it as {'parquet' if path.suffix == '.parquet' else 'CSV'}: "
                            f"{first_line(exc)}") from None
    if "key" not in frame.columns:
        raise TransrecError(f"{path}: no 'key' column (columns: {', '.join(frame.columns)})")
    if not {"text", "title", "image"} & set(frame.columns):
        raise TransrecError(f"{path}: needs a 'text', 'title' or 'image' column to encode items from")
    for col in ("title", "text", "image", "modality"):
        if col not in frame.columns:
            frame = frame.with_columns(pl.lit(None, dtype=pl.Utf8).alias(col))
    frame = frame.with_columns(pl.col("key").cast(pl.Utf8), pl.col("title").cast(pl.Utf8), pl.col("text").cast(pl.Utf8),
                               pl.col("image").cast(pl.Utf8), pl.col("modality").cast(pl.Utf8))
    frame = frame.with_columns(pl.coalesce(pl.col("text"), pl.col("title")).fill_null("").alias("text"),
                               pl.coalesce(pl.col("title"), pl.col("text")).fill_null("").alias("title"))
    dup = frame.filter(pl.col("key").is_duplicated())["key"].unique().to_list()
    if dup:
        raise TransrecError(f"{path}: duplicate keys {', '.join(map(str, dup[:3]))}")
    bad = frame.filter(pl.col("modality").is_not_null() & ~pl.col("modality").is_in(["text", "image", "both"]))
    if bad.height:
        raise TransrecError(f"{path}: modality '{bad['modality'][0]}' of item {bad['key'][0]}; expected text, image or both")
    return frame


def encode_new_items(params: dict, net, data: PlatformData, frame: pl.DataFrame) -> tuple[pl.DataFrame, np.ndarray, dict]:
    """(kept rows with their final modality, vectors [n, d], counts) for new items."""
    from transrec.data.images import load_image
    from transrec.data.text import load_tokenizer

    size = data.image_size or params["data"]["image"]["size"]
    counts = {"items": frame.height, "text": 0, "image": 0, "both": 0, "image_unreadable_text_kept": 0, "dropped": 0}
    modality, pixels, image_row = [], [], []
    for row in frame.iter_rows(named=True):
        has_text = bool(row["text"].strip())
        wanted = row["modality"] or ("image" if row["image"] else "text")
        img = None
        if wanted in ("image", "both"):
            status, img = load_image(row["image"], size) if row["image"] else ("missing", None)
            if img is None:
                counts["image_unreadable_text_kept" if has_text else "dropped"] += 1
                wanted = "text" if has_text else "dropped"
        if wanted in ("text", "both") and not has_text:
            wanted = "image" if img is not None else "dropped"
            counts["dropped"] += wanted == "dropped"
        modality.append(wanted)
        if wanted != "dropped":
            counts[wanted] += 1
        image_row.append(len(pixels) if img is not None and wanted in ("image", "both") else -1)
        if image_row[-1] >= 0:
            pixels.append(img)
    frame = frame.with_columns(pl.Series("modality", modality))
    keep = np.array([m != "dropped" for m in modality])
    width = int(data.text_ids.shape[1])
    tokenizer = load_tokenizer(data.tokenizer or net.cfg.text_encoder.name)
    enc = tokenizer(frame["text"].to_list(), max_length=width, truncation=True, padding="max_length")
    ids = torch.tensor(enc["input_ids"], dtype=torch.long).reshape(frame.height, width)
    lengths = torch.tensor(enc["attention_mask"], dtype=torch.long).reshape(frame.height, width).sum(1)
    images = np.stack(pixels) if pixels else np.zeros((0, size, size, 3), dtype=np.uint8)
    features = ItemFeatures(modality=torch.tensor([MODALITY_CODES[m] for m in modality], dtype=torch.long),
                            text_ids=ids, text_len=lengths, image_row=torch.tensor(image_row, dtype=torch.long),
                            images=images)
    platform_features = net.features
    net.attach(features.to(platform_features.device))  # the new items only, through the full encoders
    try:
        vectors = net.encode_catalog().cpu().numpy()
    finally:
        net.attach(platform_features)
    return frame.filter(pl.Series(keep)), vectors[keep], counts


def add_items(params: dict, model: str | Path, platform: str, items: Path) -> dict:
    device = local_device(params["train"])
    net, data, payload = load(params, model, platform, device, bottoms=True)  # new items go through it all
    if payload["kind"] != "content":
        raise TransrecError(f"{model_folder(model)} is an ID model: it has no way to encode items it was not trained on")
    frame = read_new_items(Path(items))
    store = added_path(model, platform)
    # A dropped catalogue item (no usable text or image) may come back with content as a new item.
    known = set(pl.read_parquet(data.proc / CATALOG).filter(pl.col("modality") != "dropped")["key"].to_list())
    previous = pl.read_parquet(store) if store.is_file() else None
    if previous is not None:
        known |= set(previous["key"].to_list())
    clash = [k for k in frame["key"].to_list() if k in known]
    if clash:
        raise TransrecError(f"{len(clash)} new item keys already exist on {platform}: {', '.join(clash[:3])}")
    kept, vectors, counts = encode_new_items(params, net, data, frame)
    out = kept.select("key", "title", "modality", "image").with_columns(
        pl.Series("vector", vectors.astype(np.float32).tolist(), dtype=pl.List(pl.Float32)))
    if previous is not None:
        out = pl.concat([previous, out])
    write_parquet(store, out)
    return {**counts, "stored": out.height, "file": str(store)}
