"""Metric functions against hand-computed values; history masking, dropped items and pessimistic ties."""
import json
import math

import numpy as np
import pytest
import torch

from transrec.data.platform import DROPPED, IMAGE, TEXT, PlatformData, Sequences
from transrec.errors import TransrecError
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


def test_per_user_values_average_to_the_metrics():
    from transrec.evaluate.metrics import per_user

    ranks = np.array([0, 2, 9, 10, 250])
    ks = [1, 10, 20]
    for name, value in metrics_from_ranks(ranks, ks).items():
        assert per_user(ranks, name).mean() == pytest.approx(value)
    assert per_user(ranks, "ndcg@10").tolist() == pytest.approx([1.0, 0.5, 1 / math.log2(11), 0.0, 0.0])
    with pytest.raises(ValueError, match="unknown metric 'recall@10'"):
        per_user(ranks, "recall@10")


def test_cold_items_split_test_users_by_the_training_count_of_their_target(tmp_path):
    """4 users over items 0-4 (5 dropped). Training sequences: item 0 occurs 5 times, items 1 and 3 twice, items
    2 and 4 never. Test targets 0, 2, 1, 4 -> buckets 5+, 0, 1-4, 0. With fixed scores falling with the item
    index and no history mask, a target's rank is its item index: ranks 0, 2, 1, 4."""
    from transrec.evaluate.document import metrics_document, read_run, write_run
    from transrec.evaluate.per_user import read_ranks

    d = _stub()
    d.train = Sequences(np.array([0, 3, 6, 8, 9]), np.array([0, 1, 0, 0, 1, 0, 0, 3, 3]))
    d.valid, d.test = np.array([3, 2, 4, 1]), np.array([0, 2, 1, 4])
    scorer = fixed([5, 4, 3, 2, 1, 10])
    valid, test = (rank_split(d, split, scorer, [1, 3], mask_history=False, max_len=4, progress=False)
                   for split in ("valid", "test"))
    assert test["ranks"].tolist() == [0, 2, 1, 4]
    doc = metrics_document(d, "stub", "popularity", valid, test, {"mask_history": False}, [1, 3], 4, 0.0)
    cold = doc["cold_items"]
    assert list(cold) == ["0", "1-4", "5+"] and [b["users"] for b in cold.values()] == [2, 1, 1]
    # bucket 0: users 1 and 3, ranks 2 and 4
    assert cold["0"] == {"users": 2, "hr@1": 0.0, "hr@3": 0.5, "ndcg@1": 0.0, "ndcg@3": 0.25,
                         "mrr": pytest.approx((1 / 3 + 1 / 5) / 2, abs=1e-6)}
    assert cold["1-4"] == {"users": 1, "hr@1": 0.0, "hr@3": 1.0, "ndcg@1": 0.0, "ndcg@3": 0.63093, "mrr": 0.5}
    assert cold["5+"] == {"users": 1, "hr@1": 1.0, "hr@3": 1.0, "ndcg@1": 1.0, "ndcg@3": 1.0, "mrr": 1.0}
    # run info keeps the split and the ranks; the DVC metrics file stays numbers only
    params = {"paths": {"results": str(tmp_path)}}
    write_run(params, doc)
    assert set(json.loads((tmp_path / "metrics" / "stub" / "popularity.json").read_text())) == {"test", "valid", "wall_s"}
    back = read_run(params, "stub", "popularity")
    assert back["cold_items"] == cold and back["test_ranks"]["ranks"] == "0 2 1 4"
    assert read_ranks(back["test_ranks"], "x").tolist() == [0, 2, 1, 4]
    d.test = np.array([0, 2, 1, 3])  # another split: same users, another test item
    other = metrics_document(d, "stub", "popularity", valid, test, {"mask_history": False}, [1, 3], 4, 0.0)
    assert other["test_ranks"]["targets_sha256"] != doc["test_ranks"]["targets_sha256"]
    with pytest.raises(TransrecError, match="x: test_ranks holds 4 ranks for 5 users"):
        read_ranks({**back["test_ranks"], "users": 5}, "x")
