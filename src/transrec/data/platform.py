"""A processed platform as the model sees it: the data contract (README) read into arrays.

catalog.parquet, split.parquet, text_ids.npy/text_mask.npy, images.npy. Sequences are kept as CSR arrays
(offsets + flat items), never as Python lists per user. Training (train.data.Batches), evaluation and
recommendation all read a platform through PlatformData.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from transrec.errors import TransrecError
from transrec.paths import CATALOG, IMAGES, SPLIT, TEXT_IDS, TEXT_MASK, step_stats

# catalog.parquet's modality column as the model reads it
DROPPED, TEXT, IMAGE, BOTH = 0, 1, 2, 3
MODALITY_CODES = {"dropped": DROPPED, "text": TEXT, "image": IMAGE, "both": BOTH}

NEEDED = (CATALOG, SPLIT, TEXT_IDS, TEXT_MASK, IMAGES)


@dataclass
class Sequences:
    """CSR: user i's items are items[offsets[i]:offsets[i+1]]."""

    offsets: np.ndarray
    items: np.ndarray

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def get(self, i: int) -> np.ndarray:
        return self.items[self.offsets[i]:self.offsets[i + 1]]

    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)


class PlatformData:
    def __init__(self, proc: str | Path, name: str = ""):
        proc = Path(proc)
        self.proc, self.name = proc, name or proc.name
        for needed in NEEDED:
            if not (proc / needed).exists():
                raise TransrecError(f"{proc / needed} not found: run the data steps for {self.name} first "
                                    "(transrec download/clean/resize/tokenize/split)")
        catalog = pl.read_parquet(proc / CATALOG).sort("item")
        if not (catalog["item"].to_numpy() == np.arange(catalog.height)).all():
            raise TransrecError(f"{proc / 'catalog.parquet'}: items are not 0..n-1")
        self.n_items = catalog.height
        self.modality = np.array([MODALITY_CODES[m] for m in catalog["modality"].to_list()], dtype=np.int64)
        self.image_row = catalog["image_row"].fill_null(-1).to_numpy().astype(np.int64)
        self.pool = np.flatnonzero(self.modality != DROPPED)  # every rankable / sampleable item

        split = pl.read_parquet(proc / SPLIT).sort("user")
        lengths = split["train"].list.len().to_numpy()
        self.train = Sequences(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                               split["train"].explode().to_numpy().astype(np.int64))
        self.valid = split["valid"].to_numpy().astype(np.int64)
        self.test = split["test"].to_numpy().astype(np.int64)
        self.users = split["user"].to_numpy()
        # a pooled source (transrec.data.pool) names each user's platform: user_platform indexes platforms
        if "platform" in split.columns:
            self.platforms = sorted(split["platform"].unique().to_list())
            self.user_platform = split["platform"].replace_strict(
                self.platforms, list(range(len(self.platforms))), return_dtype=pl.Int64).to_numpy()
        else:
            self.platforms, self.user_platform = [self.name], np.zeros(split.height, dtype=np.int64)

        self.text_ids = np.load(proc / TEXT_IDS, mmap_mode="r")
        mask = np.load(proc / TEXT_MASK)
        self.text_len = mask.sum(1).astype(np.int64)
        width = mask.shape[1]
        if not (mask == (np.arange(width)[None] < self.text_len[:, None])).all():
            raise TransrecError(f"{proc / 'text_mask.npy'}: real tokens must come first (right padding)")
        self.images = np.load(proc / IMAGES, mmap_mode="r")
        self.image_size = int(self.images.shape[1]) if self.images.ndim == 4 else None
        stats = step_stats(proc, "tokenize")
        self.tokenizer = __import__("json").loads(stats.read_text()).get("tokenizer") if stats.is_file() else None

    # ---- what the model reads --------------------------------------------------------------------
    def uses_text(self) -> np.ndarray:
        return np.isin(self.modality, [MODALITY_CODES["text"], MODALITY_CODES["both"]])

    def uses_image(self) -> np.ndarray:
        return np.isin(self.modality, [MODALITY_CODES["image"], MODALITY_CODES["both"]])

    def check_tokenizer(self, encoder_name: str) -> None:
        if self.tokenizer is not None and self.tokenizer != encoder_name and self.uses_text().any():
            raise TransrecError(f"{self.name}: texts were tokenized with '{self.tokenizer}' but "
                                f"model.text_encoder.name is '{encoder_name}'; set data.text.tokenizer to the "
                                "encoder's name and re-run `transrec tokenize`")

    # ---- evaluation contexts ------------------------------------------------------------------------
    def contexts(self, split: str, max_len: int) -> tuple[np.ndarray, np.ndarray, Sequences]:
        """(histories [U, N] left-padded with -1, targets [U], seen items per user) for valid | test."""
        if split == "valid":
            seen, targets = self.train, self.valid
        elif split == "test":
            lengths = self.train.lengths() + 1
            offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
            items = np.empty(offsets[-1], dtype=np.int64)
            ends = offsets[1:] - 1
            keep = np.ones(len(items), dtype=bool)
            keep[ends] = False
            items[keep], items[ends] = self.train.items, self.valid
            seen, targets = Sequences(offsets, items), self.test
        else:
            raise ValueError(split)
        return left_pad(seen, max_len), targets, seen


def left_pad(seqs: Sequences, n: int, ends: np.ndarray | None = None) -> np.ndarray:
    """[len(seqs), n]: the last n items of each sequence (or of seq[:ends[i]]), left-padded with -1."""
    counts = seqs.lengths() if ends is None else np.asarray(ends, dtype=np.int64)
    length = np.minimum(counts, n)
    start = seqs.offsets[:-1] + counts - length
    rows = np.repeat(np.arange(len(seqs)), length)
    within = np.arange(length.sum()) - np.repeat(np.cumsum(length) - length, length)  # 0 .. length-1
    out = np.full((len(seqs), n), -1, dtype=np.int64)
    out[rows, n - np.repeat(length, length) + within] = seqs.items[np.repeat(start, length) + within]
    return out
