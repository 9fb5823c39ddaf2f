"""A processed platform as the model sees it, and the batches training draws from it.

Reads the data contract (README): catalog.parquet, split.parquet, text_ids.npy/text_mask.npy,
images.npy. Sequences are kept as CSR arrays (offsets + flat items), never as Python lists per user.

Batches are deterministic functions of (seed, epoch, step): the user order of an epoch comes from
a generator seeded with (seed, epoch) and the negatives of a step from (seed, epoch, step), so a
resumed run draws exactly what an uninterrupted one would, and every DDP rank draws the same
global batch and keeps its own slice.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from transrec.errors import TransrecError
from transrec.model.config import ModelConfig
from transrec.model.items import DROPPED, MODALITY_CODES, ItemFeatures

NEEDED = ("catalog.parquet", "split.parquet", "text_ids.npy", "text_mask.npy", "images.npy")


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
        catalog = pl.read_parquet(proc / "catalog.parquet").sort("item")
        if not (catalog["item"].to_numpy() == np.arange(catalog.height)).all():
            raise TransrecError(f"{proc / 'catalog.parquet'}: items are not 0..n-1")
        self.n_items = catalog.height
        self.modality = np.array([MODALITY_CODES[m] for m in catalog["modality"].to_list()], dtype=np.int64)
        self.image_row = catalog["image_row"].fill_null(-1).to_numpy().astype(np.int64)
        self.pool = np.flatnonzero(self.modality != DROPPED)  # every rankable / sampleable item

        split = pl.read_parquet(proc / "split.parquet").sort("user")
        lengths = split["train"].list.len().to_numpy()
        self.train = Sequences(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64),
                               split["train"].explode().to_numpy().astype(np.int64))
        self.valid = split["valid"].to_numpy().astype(np.int64)
        self.test = split["test"].to_numpy().astype(np.int64)
        self.users = split["user"].to_numpy()

        self.text_ids = np.load(proc / "text_ids.npy", mmap_mode="r")
        mask = np.load(proc / "text_mask.npy")
        self.text_len = mask.sum(1).astype(np.int64)
        width = mask.shape[1]
        if not (mask == (np.arange(width)[None] < self.text_len[:, None])).all():
            raise TransrecError(f"{proc / 'text_mask.npy'}: real tokens must come first (right padding)")
        self.images = np.load(proc / "images.npy", mmap_mode="r")
        self.image_size = int(self.images.shape[1]) if self.images.ndim == 4 else None
        stats = proc / "stats" / "tokenize.json"
        self.tokenizer = __import__("json").loads(stats.read_text()).get("tokenizer") if stats.is_file() else None

    # ---- what the model reads --------------------------------------------------------------------
    def uses_text(self) -> np.ndarray:
        return np.isin(self.modality, [MODALITY_CODES["text"], MODALITY_CODES["both"]])

    def uses_image(self) -> np.ndarray:
        return np.isin(self.modality, [MODALITY_CODES["image"], MODALITY_CODES["both"]])

    def features(self, cache: dict | None = None, device="cpu") -> ItemFeatures:
        width = int(self.text_len.max(initial=1))
        f = ItemFeatures(
            modality=torch.from_numpy(self.modality),
            text_ids=torch.from_numpy(np.ascontiguousarray(self.text_ids[:, :max(width, 1)]).astype(np.int64)),
            text_len=torch.from_numpy(self.text_len),
            image_row=torch.from_numpy(self.image_row),
            images=self.images if self.images.ndim == 4 and len(self.images) else None,
        )
        if cache is not None:
            f.text_cache, f.text_row, f.image_cache = cache["text"], cache["text_row"], cache["image"]
        return f.to(device)

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


class Batches:
    """Training batches of one platform for a model config (numpy in, torch tensors out)."""

    def __init__(self, data: PlatformData, cfg: ModelConfig, batch_size: int, seed: int, user_fraction: float = 1.0):
        self.data, self.cfg, self.batch_size, self.seed = data, cfg, batch_size, seed
        self.n = cfg.user_encoder.max_len
        lengths = data.train.lengths()
        self.eligible = np.flatnonzero(lengths >= 2)  # a training pair needs an input and a next item
        if user_fraction < 1.0:  # the first share of a seeded user order: nested subsets across shares
            order = np.random.default_rng([seed, 0x5EED]).permutation(len(lengths))
            self.eligible = np.intersect1d(self.eligible, order[:max(1, round(user_fraction * len(lengths)))])
        if len(self.eligible) == 0:
            raise TransrecError(f"{data.name}: no user with two training interactions"
                                + (f" among the {user_fraction:g} share of users" if user_fraction < 1.0 else "")
                                + "; nothing to train on")

    def steps_per_epoch(self) -> int:
        return -(-len(self.eligible) // self.batch_size)

    def epoch(self, epoch: int, rank: int = 0, world: int = 1, shard: tuple[int, int] = (0, 1)):
        """Yield the batches of one epoch (this rank's slice of each global batch). shard=(i, n): only the
        steps with step % n == i (a DataLoader worker's share; round-robin over workers restores the order)."""
        order = np.random.default_rng([self.seed, epoch]).permutation(self.eligible)
        cut_rng = np.random.default_rng([self.seed, epoch, 1 << 20])
        cuts = None
        if self.cfg.user_encoder.mode == "bidirectional":  # one random cut per user per epoch
            lengths = self.data.train.lengths()[order]
            cuts = 1 + (cut_rng.random(len(order)) * (lengths - 1)).astype(np.int64)
        for step, start in enumerate(range(0, len(order), self.batch_size)):
            if step % shard[1] != shard[0]:
                continue
            users = order[start:start + self.batch_size]
            batch = self.build(users, None if cuts is None else cuts[start:start + self.batch_size],
                               np.random.default_rng([self.seed, epoch, step]))
            if world > 1:  # this rank's rows; the loss is normalised by the global batch's target count,
                # so that DDP's gradient average equals the single-process gradient of the same global batch
                norm = torch.tensor((batch["targets"] >= 0).sum().item() / world, dtype=torch.float32)
                batch = {k: (v[rank::world] if k not in ("negatives",) or v.dim() == 3 else v)
                         for k, v in batch.items()}
                batch["loss_norm"] = norm
            yield batch

    def build(self, users: np.ndarray, cuts: np.ndarray | None, rng: np.random.Generator) -> dict:
        seqs = self.data.train
        sub = Sequences(np.concatenate([[0], np.cumsum(seqs.lengths()[users])]).astype(np.int64),
                        np.concatenate([seqs.get(u) for u in users]))
        lengths = sub.lengths()
        if cuts is None:  # causal: inputs s[:-1], targets s[1:], last N positions
            history = left_pad(sub, self.n, ends=lengths - 1)
            shifted = Sequences(sub.offsets, np.roll(sub.items, -1))  # item i+1 at slot i (within a user)
            targets = left_pad(shifted, self.n, ends=lengths - 1)
        else:  # bidirectional: inputs s[:cut], positives s[cut:cut+P]
            history = left_pad(sub, self.n, ends=cuts)
            p = self.cfg.n_positives
            idx = sub.offsets[:-1, None] + cuts[:, None] + np.arange(p)[None]
            ok = idx < sub.offsets[1:, None]
            targets = np.where(ok, sub.items[np.minimum(idx, len(sub.items) - 1)], -1)
        own = np.unique(np.repeat(np.arange(len(users)), lengths) * self.data.n_items + sub.items)
        batch = {"history": history, "targets": targets}
        batch.update(self.negatives(targets, own, rng))
        return {k: torch.from_numpy(v) for k, v in batch.items()}

    def negatives(self, targets: np.ndarray, own: np.ndarray, rng: np.random.Generator) -> dict:
        """Random items that are none of the user's own (training) items."""
        pool, k, n_items = self.data.pool, self.cfg.n_negatives, self.data.n_items
        b = len(targets)
        if self.cfg.negatives == "per_position":
            cand = pool[rng.integers(len(pool), size=(*targets.shape, k))]
            user = np.arange(b).reshape(b, *([1] * (targets.ndim))) * n_items
            for _ in range(50):  # resample collisions with the user's items, vectorised per round
                clash = _member(user + cand, own)
                if not clash.any():
                    break
                cand[clash] = pool[rng.integers(len(pool), size=int(clash.sum()))]
            else:
                cand[_member(user + cand, own)] = -1
            cand[targets < 0] = -1  # no target at this position: nothing to contrast, nothing to encode
            return {"negatives": cand}
        cand = pool[rng.choice(len(pool), size=min(k, len(pool)), replace=False)]
        if self.cfg.negatives == "in_batch":
            cand = np.union1d(cand, targets[targets >= 0])
        mask = ~_member(np.arange(b)[:, None] * n_items + cand[None], own)
        return {"negatives": cand, "neg_mask": mask}


def _member(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if len(sorted_set) == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.searchsorted(sorted_set, keys).clip(max=len(sorted_set) - 1)
    return sorted_set[pos] == keys


class EpochStream(torch.utils.data.IterableDataset):
    """One epoch of `Batches` for a DataLoader: with N workers, worker i builds steps i, i+N, ... and the
    DataLoader's round-robin over workers yields them in step order, so batches stay a function of
    (seed, epoch, step) and a run is the same with or without workers."""

    def __init__(self, batches: Batches, epoch: int, rank: int = 0, world: int = 1):
        self.batches, self.epoch_index, self.rank, self.world = batches, epoch, rank, world

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        shard = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.batches.epoch(self.epoch_index, self.rank, self.world, shard)


def epoch_batches(batches: Batches, epoch: int, rank: int, world: int, workers: int, pin: bool):
    """The epoch's batches, built in `workers` background processes (0: in this process) and, for a GPU,
    in pinned memory so that the copies to the device are asynchronous."""
    if workers == 0 and not pin:
        return batches.epoch(epoch, rank, world)
    # A DataLoader draws its workers' base seed from the generator it is given: its own one, so that the
    # global RNG (dropout) is not advanced and a run is the same with or without the loader.
    return torch.utils.data.DataLoader(EpochStream(batches, epoch, rank, world), batch_size=None,
                                       num_workers=workers, pin_memory=pin, generator=torch.Generator())
