"""Ranking metrics for leave-one-out evaluation with full ranking.

rank = number of *other* items whose score is >= the target's score (0 = ranked first). Ties are
counted against the target (pessimistic): a model that scores everything equally ranks the target
last, never first. Masked items (history, dropped) carry -inf and so never outrank a target.

    HR@k   = mean(rank < k)
    NDCG@k = mean(1 / log2(rank + 2) if rank < k else 0)     (one relevant item: IDCG = 1)
    MRR    = mean(1 / (rank + 1))                               (no cut-off)
"""
from __future__ import annotations

import math

import numpy as np
import torch


def pessimistic_ranks(scores: torch.Tensor, targets: torch.Tensor, block: int = 8192) -> torch.Tensor:
    """[U] ranks of targets[u] within scores[u] (ties count against the target).

    Counted over blocks of items: summing a [U, n_items] comparison at once casts it to int64, a
    temporary twice the size of the float scores (780 MiB for 1024 users x 100k items)."""
    target_scores = scores.gather(1, targets.view(-1, 1))
    counts = torch.zeros(len(scores), dtype=torch.int64, device=scores.device)
    for start in range(0, scores.shape[1], block):
        counts += (scores[:, start:start + block] >= target_scores).sum(1)
    return counts - 1  # the target itself is >= itself


# The metrics, by name: what one user scores from the 0-based rank of their test item (a float64 tensor).
# Those with a cut-off are computed at every evaluate.ks (hr@10, ndcg@20), the others once (mrr). Adding a
# metric is one entry here (docs/adding-a-metric.md): evaluation, the metrics files, the report's intervals
# and `dvc metrics show` all take their names from these two tables.
AT_K = {
    "hr": lambda ranks, k: (ranks < k).double(),
    "ndcg": lambda ranks, k: (ranks < k) / torch.log2(ranks + 2),
}
WHOLE = {
    "mrr": lambda ranks: 1.0 / (ranks + 1),
}


def metric_names(ks: list[int]) -> list[str]:
    """Every metric a run writes for evaluate.ks (10 is always evaluated: it is the early-stopping monitor)."""
    ks = sorted(set(ks) | {10})
    return [*(f"{name}@{k}" for name in AT_K for k in ks), *WHOLE]


def per_user(ranks, metric: str) -> np.ndarray:
    """One value per user of `metric` (e.g. hr@10, mrr): what metrics_from_ranks averages. Paired
    comparisons between runs (transrec.report.intervals) resample these."""
    ranks = torch.as_tensor(np.asarray(ranks), dtype=torch.float64)
    name, _, k = metric.partition("@")
    if not k and name in WHOLE:
        return WHOLE[name](ranks).numpy()
    if name in AT_K and k.isdigit():
        return AT_K[name](ranks, int(k)).numpy()
    raise ValueError(f"unknown metric '{metric}'")


def metric_sums(ranks: torch.Tensor, ks: list[int]) -> dict[str, float]:
    """Sums (not means) so that chunks add up; divide by the user count at the end."""
    ranks = ranks.double()
    out = {f"{name}@{k}": float(value(ranks, k).sum()) for k in ks for name, value in AT_K.items()}
    out.update({name: float(value(ranks).sum()) for name, value in WHOLE.items()})
    return out


def metrics_from_ranks(ranks, ks: list[int]) -> dict[str, float]:
    ranks = torch.as_tensor(ranks)
    sums = metric_sums(ranks, ks)
    return {k: v / max(1, len(ranks)) for k, v in sums.items()}


def ndcg_at(rank: int, k: int) -> float:
    """One user's NDCG@k for a 0-based rank (for readers checking the formula)."""
    return 1.0 / math.log2(rank + 2) if rank < k else 0.0
