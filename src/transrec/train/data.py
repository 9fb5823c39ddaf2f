"""The batches training draws from a platform (transrec.data.platform.PlatformData).

Batches are deterministic functions of (seed, epoch, step): the user order of an epoch comes from
a generator seeded with (seed, epoch) and the negatives of a step from (seed, epoch, step), so a
resumed run draws exactly what an uninterrupted one would, and every DDP rank draws the same
global batch and keeps its own slice.
"""
from __future__ import annotations

import numpy as np
import torch

from transrec.data.platform import PlatformData, Sequences, left_pad
from transrec.errors import TransrecError
from transrec.model.config import ModelConfig

SAMPLES = ("windows", "prefixes", "last")
SOURCE_SAMPLING = ("proportional", "balanced")  # across the platforms of a pooled source (Batches._balanced)
SHARED_KEYS = ("negatives", "neg_logq")  # one tensor for the whole batch (not sliced per DDP rank)


class Batches:
    """Training batches of one platform for a model config (numpy in, torch tensors out).

    What one sample is (train.samples), for a user's training sequence s of length L (targets s[1:]):
      windows   (default) the L-1 targets cut into consecutive segments of at most N = max_len; a segment
                ending at target t is one sample whose input is the N items before t and whose loss counts
                only the segment's own positions. For a user with more than N targets the segment boundaries
                move by a random offset each epoch, so every target is predicted exactly once per epoch, with
                a different context length each epoch; a user with at most N targets is one whole segment
                (splitting it would only add samples whose targets see less context: on the ML-100K peer split
                NDCG@10 0.1117 -> 0.1162, on Amazon ~40% fewer samples per epoch). ML-100K users average 106
                items: with N=50, `last` never trains on half the data.
      prefixes  every target t is its own sample (input: the N items before it; loss at the last position
                only), RecBole's scheme: the same targets, N times the compute per epoch for a causal model.
      last      the last N positions of each user only (the first recipe; kept for comparison).
    A causal model predicts at every owned position; a bidirectional one (the user = the last position)
    takes `prefixes` (every cut, positives s[t:t+P]) or `last` (one random cut per user per epoch).
    """

    def __init__(self, data: PlatformData, cfg: ModelConfig, batch_size: int, seed: int, user_fraction: float = 1.0,
                 samples: str = "windows", source_sampling: str = "proportional"):
        if samples not in SAMPLES:
            raise TransrecError(f"train.samples: expected one of {' | '.join(SAMPLES)}, got {samples!r}")
        if source_sampling not in SOURCE_SAMPLING:
            raise TransrecError(f"train.source_sampling: expected one of {' | '.join(SOURCE_SAMPLING)}, "
                                f"got {source_sampling!r}")
        self.source_sampling = source_sampling
        if samples == "windows" and cfg.user_encoder.mode == "bidirectional":
            raise TransrecError("train.samples: windows needs a causal user encoder (every position predicts); "
                                "a bidirectional one takes prefixes or last")
        self.data, self.cfg, self.batch_size, self.seed, self.samples = data, cfg, batch_size, seed, samples
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
        # logQ correction (model.logq): how often each item is a training target of the trained users,
        # the probability that it shows up among a batch's in-batch negatives
        seqs = data.train
        n_targets = seqs.lengths()[self.eligible] - 1
        first = np.repeat(seqs.offsets[self.eligible] + 1 - np.cumsum(n_targets) + n_targets, n_targets)
        targets = seqs.items[first + np.arange(n_targets.sum())]  # s[1:] of every trained user
        self.target_share = np.bincount(targets, minlength=data.n_items) / max(1, len(targets))
        self._log_not_target = np.log1p(-np.minimum(self.target_share, 1 - 1e-12))  # per step in log_q: once here

    # ---- which samples an epoch has -----------------------------------------------------------------
    def epoch_samples(self, epoch: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(user, end, owned) per sample, in this epoch's order: the input is the N items before position
        `end` of the user's training sequence, the targets are the last `owned` of the next items."""
        lengths = self.data.train.lengths()
        users = self.eligible
        n_targets = lengths[users] - 1
        rng = np.random.default_rng([self.seed, epoch, 1 << 20])
        if self.samples == "last":
            if self.cfg.user_encoder.mode == "bidirectional":  # one random cut per user per epoch
                ends = 1 + (rng.random(len(users)) * n_targets).astype(np.int64)
                owned = np.ones(len(users), dtype=np.int64)
            else:
                ends, owned = lengths[users] - 1, np.minimum(n_targets, self.n)
        elif self.samples == "prefixes":
            users = np.repeat(users, n_targets)
            ends = np.arange(len(users)) - np.repeat(np.cumsum(n_targets) - n_targets, n_targets) + 1  # 1 .. L-1
            owned = np.ones(len(users), dtype=np.int64)
        else:  # windows: segment ends L-1, L-1-o, L-1-o-N, ... (o = this epoch's offset, < N; 0 if L-1 <= N)
            offset = (rng.random(len(users)) * np.minimum(self.n, n_targets)).astype(np.int64)
            offset[n_targets <= self.n] = 0
            inner = -(-(n_targets - offset) // self.n)             # segments ending at L-1-o-kN >= 1
            count = inner + (offset > 0)
            user_rep = np.repeat(np.arange(len(users)), count)
            k = np.arange(count.sum()) - np.repeat(np.cumsum(count) - count, count)  # 0 .. count-1
            last = lengths[users] - 1
            k_inner = k - (offset > 0)[user_rep]                    # -1 = the newest (partial) segment
            ends = np.where(k_inner < 0, last[user_rep], last[user_rep] - offset[user_rep] - k_inner * self.n)
            starts = np.where(k_inner < 0, last[user_rep] - offset[user_rep],
                              np.maximum(0, ends - self.n))          # targets starts+1 .. ends
            users, owned = users[user_rep], ends - starts
        if self.source_sampling == "balanced" and len(self.data.platforms) > 1:
            keep = self._balanced(self.data.user_platform[users], np.random.default_rng([self.seed, epoch, 2 << 20]))
            users, ends, owned = users[keep], ends[keep], owned[keep]
        order = np.random.default_rng([self.seed, epoch]).permutation(len(users))
        return users[order], ends[order], owned[order]

    @staticmethod
    def _balanced(platform: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Indices of an epoch's samples in which every platform of a pooled source has the same count, the
        epoch's mean per platform: a smaller platform's samples repeat whole (plus a random remainder), a
        larger one's are a random subset, a different one each epoch."""
        present = np.unique(platform)
        each = round(len(platform) / len(present))
        picked = []
        for p in present:
            own = np.flatnonzero(platform == p)
            picked += [np.tile(own, each // len(own)), rng.choice(own, each % len(own), replace=False)]
        return np.sort(np.concatenate(picked))

    def steps_per_epoch(self, epoch: int = 0) -> int:
        return -(-len(self.epoch_samples(epoch)[0]) // self.batch_size)

    def epoch(self, epoch: int, rank: int = 0, world: int = 1, shard: tuple[int, int] = (0, 1), start: int = 0):
        """Yield the batches of one epoch (this rank's slice of each global batch), from step `start` on
        (a resumed run). shard=(i, n): only the steps with (step - start) % n == i (a DataLoader worker's
        share; round-robin over workers restores the order)."""
        users, ends, owned = self.epoch_samples(epoch)
        for step, first in enumerate(range(0, len(users), self.batch_size)):
            if step < start or (step - start) % shard[1] != shard[0]:
                continue
            rows = slice(first, first + self.batch_size)
            batch = self.build(users[rows], ends[rows], owned[rows], np.random.default_rng([self.seed, epoch, step]))
            if world > 1:  # this rank's rows; the loss is normalised by the global batch's target count,
                # so that DDP's gradient average equals the single-process gradient of the same global batch
                norm = torch.tensor((batch["targets"] >= 0).sum().item() / world, dtype=torch.float32)
                batch = {k: (v[rank::world] if k not in SHARED_KEYS or v.dim() == 3 else v)
                         for k, v in batch.items()}
                batch["loss_norm"] = norm
            yield batch

    def build(self, users: np.ndarray, ends: np.ndarray, owned: np.ndarray, rng: np.random.Generator) -> dict:
        seqs = self.data.train
        sub = Sequences(np.concatenate([[0], np.cumsum(seqs.lengths()[users])]).astype(np.int64),
                        np.concatenate([seqs.get(u) for u in users]))
        history = left_pad(sub, self.n, ends=ends)
        if self.cfg.user_encoder.mode == "causal":  # slot i predicts the item after it; only owned slots count
            shifted = Sequences(sub.offsets, np.roll(sub.items, -1))  # item i+1 at slot i (within a user)
            targets = left_pad(shifted, self.n, ends=ends)
            targets[np.arange(self.n)[None] < (self.n - owned)[:, None]] = -1
        else:  # bidirectional: positives s[end:end+P] for the user vector at the last position
            p = self.cfg.n_positives
            idx = sub.offsets[:-1, None] + ends[:, None] + np.arange(p)[None]
            ok = idx < sub.offsets[1:, None]
            targets = np.where(ok, sub.items[np.minimum(idx, len(sub.items) - 1)], -1)
        own = np.unique(np.repeat(np.arange(len(users)), sub.lengths()) * self.data.n_items + sub.items)
        batch = {"history": history, "targets": targets}
        if self.cfg.loss != "ce":  # full cross-entropy scores every item: nothing to sample
            batch.update(self.negatives(targets, own, rng))
        return {k: torch.from_numpy(v) for k, v in batch.items()}

    def negatives(self, targets: np.ndarray, own: np.ndarray, rng: np.random.Generator) -> dict:
        """Random items that are none of the user's own (training) items, and, for the logQ correction,
        log Q: the log-probability of each candidate (and each target) being among the step's candidates."""
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
        k = min(k, len(pool))
        cand = pool[rng.choice(len(pool), size=k, replace=False)]
        if self.cfg.negatives == "in_batch":
            cand = np.union1d(cand, targets[targets >= 0])
        mask = ~_member(np.arange(b)[:, None] * n_items + cand[None], own)
        out = {"negatives": cand, "neg_mask": mask}
        if self.cfg.logq:
            log_q = self.log_q(int((targets >= 0).sum()), k)
            out["neg_logq"], out["target_logq"] = log_q[cand], np.where(targets >= 0, log_q[targets.clip(min=0)], 0.0)
        return out

    def log_q(self, n_targets: int, k: int) -> np.ndarray:
        """float32 [n_items]: log P(item is a candidate of a step) = log(1 - (1 - k/|pool|)(1 - p)^T), with
        k uniform random items, and for in-batch negatives T targets drawn with the items' target shares p
        (Yi et al. 2019, sampling-bias-corrected softmax; with uniform negatives only it is a constant)."""
        uniform = np.zeros(self.data.n_items)
        uniform[self.data.pool] = k / len(self.data.pool)
        miss = 1.0 - uniform
        if self.cfg.negatives == "in_batch":
            miss = miss * np.exp(n_targets * self._log_not_target)
        return np.log(np.clip(1.0 - miss, 1e-12, None)).astype(np.float32)


def _member(keys: np.ndarray, sorted_set: np.ndarray) -> np.ndarray:
    if len(sorted_set) == 0:
        return np.zeros(keys.shape, dtype=bool)
    pos = np.searchsorted(sorted_set, keys).clip(max=len(sorted_set) - 1)
    return sorted_set[pos] == keys


class EpochStream(torch.utils.data.IterableDataset):
    """One epoch of `Batches` for a DataLoader: with N workers, worker i builds steps i, i+N, ... and the
    DataLoader's round-robin over workers yields them in step order, so batches stay a function of
    (seed, epoch, step) and a run is the same with or without workers."""

    def __init__(self, batches: Batches, epoch: int, rank: int = 0, world: int = 1, start: int = 0):
        self.batches, self.epoch_index, self.rank, self.world, self.start = batches, epoch, rank, world, start

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        shard = (info.id, info.num_workers) if info is not None else (0, 1)
        return self.batches.epoch(self.epoch_index, self.rank, self.world, shard, self.start)


def epoch_batches(batches: Batches, epoch: int, rank: int, world: int, workers: int, pin: bool, start: int = 0):
    """The epoch's batches, built in `workers` background processes (0: in this process) and, for a GPU,
    in pinned memory so that the copies to the device are asynchronous."""
    if workers == 0 and not pin:
        return batches.epoch(epoch, rank, world, start=start)
    # A DataLoader draws its workers' base seed from the generator it is given: its own one, so that the
    # global RNG (dropout) is not advanced and a run is the same with or without the loader.
    return torch.utils.data.DataLoader(EpochStream(batches, epoch, rank, world, start), batch_size=None,
                                       num_workers=workers, pin_memory=pin, generator=torch.Generator())
