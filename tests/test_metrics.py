"""Metric functions against hand-computed values; history masking, dropped items and pessimistic ties."""
import math

import numpy as np
import pytest
import torch

from transrec.data.platform import DROPPED, IMAGE, TEXT, PlatformData, Sequences
from transrec.evaluate.metrics import metrics_from_ranks, ndcg_at, pessimistic_ranks
from transrec.evaluate.ranking import popularity_scorer, rank_split


def test_pessimistic_ranks_and_metrics_match_hand_values():
    scores = torch.tensor([[0.9, 0.5, 0.5, 0.1, 0.3],   # target 1: item 0 above, item 2 tied -> rank 2
                           [0.1, 0.2, 0.3, 0.4, 0.5],   # target 4: best -> rank 0
                           [1.0, 1.0, 1.0, 1.0, 1.0]])  # target 0: all tied -> last, rank 4
    ranks = pessimistic_ranks(scores, torch.tensor([1, 4, 0]))
    assert ranks.tolist() == [2, 0, 4]
    m = metrics_from_ranks(ranks, [1, 3, 5])
    assert m["hr@1"] == pytest.approx(1 / 3)
    assert m["hr@3"] == pytest.approx(2 / 3)
    assert m["hr@5"] == pytest.approx(1.0)
    assert m["ndcg@1"] == pytest.approx(1 / 3)
    assert m["ndcg@3"] == pytest.approx((1 / math.log2(4) + 1) / 3)            # 0.5
    assert m["ndcg@5"] == pytest.approx((0.5 + 1 + 1 / math.log2(6)) / 3)      # 0.628951
    assert m["ndcg@5"] == pytest.approx(0.628951, abs=1e-6)
    assert m["mrr"] == pytest.approx((1 / 3 + 1 + 1 / 5) / 3)                 # 0.511111
    assert ndcg_at(0, 10) == 1.0 and ndcg_at(10, 10) == 0.0


def _stub() -> PlatformData:
    """6 items (item 5 dropped), 2 users; PlatformData's own contexts() logic on hand-made sequences."""
    d = object.__new__(PlatformData)
    d.name, d.n_items = "stub", 6
    d.modality = np.array([TEXT, IMAGE, TEXT, IMAGE, TEXT, DROPPED])
    d.pool = np.flatnonzero(d.modality != DROPPED)
    d.train = Sequences(np.array([0, 2, 3]), np.array([0, 1, 3]))  # user0: [0, 1]; user1: [3]
    d.valid = np.array([2, 3])   # user1 meets item 3 again: the target is never masked
    d.test = np.array([3, 0])
    return d


def fixed(scores):
    s = torch.tensor(scores, dtype=torch.float32)
    return lambda histories: s[None].expand(len(histories), -1).clone()


def test_rank_split_masks_history_not_target_and_never_ranks_dropped():
    d = _stub()
    scorer = fixed([5, 4, 3, 2, 1, 10])  # the dropped item scores highest: must not count
    valid = rank_split(d, "valid", scorer, [1, 3], mask_history=True, max_len=4, progress=False)
    # user0: target 2 (3.0); items 0, 1 masked, item 5 dropped -> rank 0.  user1: target 3 (2.0) is in the
    # history but never masked; items 0, 1, 2 score higher -> rank 3.
    assert valid["metrics"]["hr@1"] == pytest.approx(0.5)
    assert valid["metrics"]["mrr"] == pytest.approx((1 + 1 / 4) / 2)
    assert valid["items_ranked"] == 5 and valid["users"] == 2
    test = rank_split(d, "test", scorer, [1, 3], mask_history=True, max_len=4, progress=False)
    # user0: context train + valid = {0, 1, 2}: target 3 -> rank 0.  user1: {3, 3}: target 0 -> rank 0.
    assert test["metrics"]["hr@1"] == 1.0
    assert test["masked_history_items"] == 3 + 2
    unmasked = rank_split(d, "test", scorer, [1, 3], mask_history=False, max_len=4, progress=False)
    # user0: items 0, 1, 2 outrank target 3 -> rank 3; user1: target 0 first -> rank 0
    assert unmasked["metrics"]["mrr"] == pytest.approx((1 / 4 + 1) / 2)


def test_contexts_left_pad_and_append_validation_item():
    hist, targets, seen = _stub().contexts("test", 3)
    assert hist.tolist() == [[0, 1, 2], [-1, 3, 3]]
    assert targets.tolist() == [3, 0]
    assert seen.get(0).tolist() == [0, 1, 2]


def test_popularity_ties_are_pessimistic():
    d = _stub()
    d.train = Sequences(np.array([0, 1, 2]), np.array([1, 3]))  # items 1 and 3 seen once, the rest never
    d.valid, d.test = np.array([0, 4]), np.array([2, 0])
    out = rank_split(d, "valid", popularity_scorer(d), [10], mask_history=False, max_len=4, progress=False)
    # user0: target 0 (count 0) ties with items 2 and 4, below 1 and 3 -> rank 4 (not 2).
    # user1: target 4 (count 0) ties with 0 and 2 -> rank 4 as well.
    assert out["metrics"]["mrr"] == pytest.approx(1 / 5)
