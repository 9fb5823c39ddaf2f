"""Full-ranking leave-one-out evaluation over a platform's whole catalogue, users in chunks.

A scorer maps a chunk of left-padded histories [C, N] to scores [C, n_items]; for a model it is one
matrix product against the catalogue vectors, encoded once per evaluation. Memory is bounded by
chunk x n_items scores. Dropped items are never ranked; the user's history items are masked
(configurable); the target itself is never masked.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from tqdm import tqdm

from transrec.data.platform import DROPPED, PlatformData
from transrec.evaluate.metrics import metric_sums, pessimistic_ranks

Scorer = Callable[[torch.Tensor], torch.Tensor]


def rank_split(data: PlatformData, split: str, scorer: Scorer, ks: list[int], mask_history: bool = True,
               chunk: int = 1024, max_len: int = 20, device="cpu", progress: bool = True) -> dict:
    """{"metrics", "users", "items_ranked", "masked_history_items", "ranks"}: ranks holds every user's
    pessimistic rank in the platform's user order (int64 [users])."""
    histories, targets, seen = data.contexts(split, max_len)
    dropped = torch.from_numpy(data.modality == DROPPED).to(device)
    sums: dict[str, float] = {}
    ranks = []  # per user, in user order: what paired comparisons and the cold-item split need
    masked = 0
    n = len(targets)
    for s in tqdm(range(0, n, chunk), desc=f"rank {data.name} {split}", unit="chunk", disable=not progress,
                  leave=False):
        e = min(n, s + chunk)
        target = torch.from_numpy(targets[s:e]).to(device)
        # In place: at 100k items a chunk's score matrix is ~400 MB, and each copy would cost as much again.
        scores = scorer(torch.from_numpy(histories[s:e]).to(device)).float()
        scores.nan_to_num_(nan=float("-inf")).masked_fill_(dropped[None], float("-inf"))
        if mask_history:
            lengths = np.diff(seen.offsets[s:e + 1])
            rows = np.repeat(np.arange(e - s), lengths)
            cols = seen.items[seen.offsets[s]:seen.offsets[e]]
            keep = cols != targets[s:e][rows]  # never mask the target itself
            rows, cols = torch.from_numpy(rows[keep]).to(device), torch.from_numpy(cols[keep]).to(device)
            scores[rows, cols] = float("-inf")
            masked += len(rows)
        chunk_ranks = pessimistic_ranks(scores, target)
        ranks.append(chunk_ranks.cpu().numpy())
        for key, value in metric_sums(chunk_ranks, ks).items():
            sums[key] = sums.get(key, 0.0) + value
        del scores  # before the next chunk's scores exist: one score matrix alive at a time
    metrics = {key: round(value / max(1, n), 6) for key, value in sums.items()}
    return {"metrics": metrics, "users": int(n), "items_ranked": int(len(data.pool)),
            "masked_history_items": int(masked), "ranks": np.concatenate(ranks) if ranks else np.zeros(0, np.int64)}


def model_scorer(model, device="cpu") -> Scorer:
    """Encode the catalogue once, then score each chunk of users with one matrix product."""
    model.eval()
    catalog = model.encode_catalog()

    def score(histories: torch.Tensor) -> torch.Tensor:
        return model.full_sort_predict(histories.to(device), catalog)

    return score


def popularity_scorer(data: PlatformData, device="cpu") -> Scorer:
    """Every user gets the same scores: how often each item occurs in the training sequences."""
    counts = torch.from_numpy(np.bincount(data.train.items, minlength=data.n_items).astype(np.float32)).to(device)

    def score(histories: torch.Tensor) -> torch.Tensor:
        return counts[None].expand(len(histories), -1).clone()

    return score
