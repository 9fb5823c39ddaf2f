"""95% paired bootstrap intervals of the gain of one setting over another on the same test users.

A gain is mean_u(metric_over[u]) - mean_u(metric_base[u]) over a platform's test users, each run's
per-user metric coming from the ranks its run-info file keeps (transrec.evaluate.per_user): every run of
a platform ranks the same users in the same order, so user u of one run is user u of the other.

One resample draws the test users with replacement, once, for both sides (the pairing: what a user
finds hard counts on both sides and cancels), and, where a side has several seeds (replicates
`@seed<n>`), draws that side's seeds with replacement, independently of the other side's: seed i of
finetune and seed i of scratch are separate models that share nothing a pairing could cancel, and a
deterministic baseline (popularity, one run) has no seed to pair with. The side's value is then the
mean over its drawn seeds of the mean over the drawn users. The interval is the 2.5th and 97.5th
percentile of RESAMPLES such gains, with a fixed generator seed (the report is reproducible). With one
seed a side is the user bootstrap alone; with two or three seeds the seed draw can only reuse the seeds
there are, so it understates the seed-to-seed spread (more replicates tighten that, not more resamples).
"""
from __future__ import annotations

import numpy as np

RESAMPLES = 2000
SEED = 0
LEVEL = 0.95
CHUNK = 250  # resamples drawn at once: a [CHUNK, users] count matrix, ~40 MB at 20k users


def _counts(rng: np.random.Generator, rows: int, n: int) -> np.ndarray:
    """[rows, n]: how often each of n things is drawn in each row of n draws with replacement."""
    picks = rng.integers(0, n, (rows, n)) + n * np.arange(rows)[:, None]
    return np.bincount(picks.ravel(), minlength=rows * n).reshape(rows, n)


def paired_bootstrap(over: np.ndarray, base: np.ndarray, resamples: int = RESAMPLES,
                     seed: int = SEED) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gain, low, high), each [metrics], of `over` against `base`: arrays [seeds, users, metrics] of
    per-user metric values, the same users in the same order on both sides (seed counts may differ)."""
    over, base = np.asarray(over, dtype=np.float64), np.asarray(base, dtype=np.float64)
    if over.shape[1:] != base.shape[1:]:
        raise ValueError(f"unpaired per-user values: {over.shape} against {base.shape}")
    n_users, n_metrics = over.shape[1:]
    rng = np.random.default_rng(seed)
    gains = []
    for start in range(0, resamples, CHUNK):
        rows = min(CHUNK, resamples - start)
        users = _counts(rng, rows, n_users)  # [rows, users], shared by both sides
        sides = []
        for values in (over, base):
            n_seeds = len(values)
            # mean over the drawn users, per seed: [rows, seeds, metrics]
            per_seed = (users @ values.transpose(1, 0, 2).reshape(n_users, -1)).reshape(rows, n_seeds, n_metrics)
            weights = _counts(rng, rows, n_seeds) / n_seeds  # [rows, seeds]: the seed draw
            sides.append(np.einsum("rs,rsm->rm", weights, per_seed) / n_users)
        gains.append(sides[0] - sides[1])
    low, high = np.percentile(np.concatenate(gains), [50 * (1 - LEVEL), 50 * (1 + LEVEL)], axis=0)
    return over.mean((0, 1)) - base.mean((0, 1)), low, high


def within_noise(low: float, high: float) -> bool:
    """The interval covers 0: the data cannot tell the two settings apart."""
    return low <= 0.0 <= high
