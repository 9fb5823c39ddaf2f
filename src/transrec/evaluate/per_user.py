"""What a run's test evaluation keeps per user, in its run-info file (never in the DVC metrics file):

    test_ranks    {"users": U, "targets_sha256": ..., "ranks": "r_0 r_1 ... r_U-1"}: every test user's
                  pessimistic rank (transrec.evaluate.metrics), in the platform's user order, as one string
                  of integers (about 5 bytes a user on a 10k-item catalogue; a JSON list would take a line
                  per user in the indented file). The report resamples them for paired intervals.
    cold_items    the test metrics by how often the user's test item occurs in the platform's training
                  sequences (buckets 0, 1-4, 5+ times), each with its count of users.

Every run of a platform ranks the same test users in the same order (PlatformData's user order; a
tgt<f> variant trains on a share of the users but is evaluated on all of them), so rank i of two runs
is the same user with the same target: the pairing of the report's bootstrap. `targets_sha256` lets the
report refuse to pair runs evaluated on different splits. The counts come from the whole training split,
not from the share a tgt<f> run trained on, so a bucket holds the same users in every run of a platform.
"""
from __future__ import annotations

import hashlib

import numpy as np

from transrec.data.platform import PlatformData
from transrec.errors import TransrecError
from transrec.evaluate.metrics import metrics_from_ranks

# (name, least count, most count or None): how often the test item occurs in the training sequences
SEEN_BUCKETS = (("0", 0, 0), ("1-4", 1, 4), ("5+", 5, None))


def targets_digest(targets: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(targets, dtype="<i8").tobytes()).hexdigest()[:16]


def ranks_record(targets: np.ndarray, ranks: np.ndarray) -> dict:
    return {"users": int(len(ranks)), "targets_sha256": targets_digest(targets),
            "ranks": " ".join(map(str, np.asarray(ranks).tolist()))}


def read_ranks(record: dict, where: str) -> np.ndarray:
    """The ranks of a run-info file's `test_ranks` record; one line naming the file when it is damaged."""
    try:
        ranks = np.array(record["ranks"].split(), dtype=np.int64)
    except (KeyError, AttributeError, ValueError):
        raise TransrecError(f"{where}: test_ranks is not a string of integers; rerun its evaluate step") from None
    if len(ranks) != record.get("users"):
        raise TransrecError(f"{where}: test_ranks holds {len(ranks)} ranks for {record.get('users')} users; "
                            "rerun its evaluate step")
    return ranks


def train_counts(data: PlatformData) -> np.ndarray:
    """How often each item occurs in the training sequences (what popularity ranks by)."""
    return np.bincount(data.train.items, minlength=data.n_items)


def cold_items(counts: np.ndarray, targets: np.ndarray, ranks: np.ndarray, ks: list[int]) -> dict:
    """{bucket: {"users": n, metric: value, ...}} over the users whose target's training count falls in the
    bucket; an empty bucket has its users (0) and no metrics."""
    seen = counts[targets]
    out = {}
    for name, low, high in SEEN_BUCKETS:
        inside = (seen >= low) & (seen <= high if high is not None else True)
        n = int(inside.sum())
        metrics = {k: round(v, 6) for k, v in metrics_from_ranks(ranks[inside], ks).items()} if n else {}
        out[name] = {"users": n, **metrics}
    return out


def cold_summary(cold: dict) -> dict:
    """The cold-item split as flat W&B summary keys: test_seen<bucket>/<metric> and test_seen<bucket>/users."""
    return {f"test_seen{name}/{key}": value for name, bucket in cold.items() for key, value in bucket.items()}
