"""The training recipe on hand-checkable cases: which targets an epoch trains on (windows, prefixes, last),
full-catalogue cross-entropy and logQ-corrected sampled softmax against values computed by hand, the
sampling probabilities behind logQ, and the learning-rate schedule."""
import math
from collections import Counter

import numpy as np
import pytest
import torch

from transrec.data.platform import DROPPED, TEXT, PlatformData, Sequences
from transrec.errors import TransrecError
from transrec.model.config import ModelConfig, UserEncoderConfig
from transrec.model.items import ItemFeatures
from transrec.model.recommender import Recommender
from transrec.train.data import Batches
from transrec.train.loop import lr_scale


def stub(lengths, n_items=40, dropped=(38, 39)) -> PlatformData:
    """A platform whose user u has the training sequence 100*u + 0, 1, ... (mod the catalogue) in miniature:
    distinct items per user, so every (user, position) is recognisable from the item alone."""
    rng = np.random.default_rng(1)
    keep = np.setdiff1d(np.arange(n_items), dropped)
    seqs = [rng.choice(keep, size=k, replace=False) for k in lengths]
    d = object.__new__(PlatformData)
    d.name, d.n_items = "stub", n_items
    d.modality = np.full(n_items, TEXT)
    d.modality[list(dropped)] = DROPPED
    d.pool = np.flatnonzero(d.modality != DROPPED)
    d.train = Sequences(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64), np.concatenate(seqs))
    return d


def cfg(max_len=4, **kw) -> ModelConfig:
    return ModelConfig(d=4, user_encoder=UserEncoderConfig(layers=1, heads=1, hidden=8, max_len=max_len, dropout=0.0),
                       **{"loss": "softmax", **kw})


def trained_targets(batches: Batches, epoch: int) -> Counter:
    """(user, position in the training sequence) of every target the epoch's batches ask for, checking on
    the way that each target's context is exactly the items before it (at most max_len of them)."""
    users, ends, owned = batches.epoch_samples(epoch)
    found = Counter()
    n = batches.n
    for start, batch in zip(range(0, len(users), batches.batch_size), batches.epoch(epoch)):
        h, t = batch["history"].numpy(), batch["targets"].numpy()
        for row, (u, end) in enumerate(zip(users[start:start + batches.batch_size], ends[start:start + batches.batch_size])):
            seq = batches.data.train.get(u)
            context = seq[:end][-n:]
            assert h[row][h[row] >= 0].tolist() == context.tolist()
            for slot in np.flatnonzero(t[row] >= 0):
                pos = end - (n - 1 - slot)  # slot n-1 predicts s[end]
                assert t[row][slot] == seq[pos] and h[row][slot] == seq[pos - 1]
                found[(int(u), int(pos))] += 1
    return found


def test_windows_train_every_interaction_exactly_once_per_epoch():
    lengths = [2, 3, 5, 9, 12, 4, 17]
    data = stub(lengths)
    batches = Batches(data, cfg(max_len=4), batch_size=3, seed=0, samples="windows")
    every = Counter({(u, p): 1 for u, k in enumerate(lengths) for p in range(1, k)})
    segmentations = set()
    for epoch in range(4):
        assert trained_targets(batches, epoch) == every
        users, ends, _ = batches.epoch_samples(epoch)
        segmentations.add(tuple(sorted(ends[users == 6].tolist())))
        short = np.flatnonzero(np.array(lengths) - 1 <= 4)  # at most max_len targets: one whole segment
        assert sorted(users[np.isin(users, short)].tolist()) == sorted(short.tolist())
    assert len(segmentations) > 1  # the segment boundaries move from epoch to epoch (user 6: 16 targets)
    # `last` (the first recipe) trains on the last max_len targets only: 22 of the 45 here
    last = trained_targets(Batches(data, cfg(max_len=4), batch_size=3, seed=0, samples="last"), 0)
    assert sum(last.values()) == sum(min(k - 1, 4) for k in lengths) == 22


def test_prefixes_make_each_target_its_own_sample():
    lengths = [3, 7, 6]
    batches = Batches(stub(lengths), cfg(max_len=4), batch_size=4, seed=0, samples="prefixes")
    users, ends, owned = batches.epoch_samples(0)
    assert len(users) == sum(k - 1 for k in lengths) and (owned == 1).all()
    assert trained_targets(batches, 0) == Counter({(u, p): 1 for u, k in enumerate(lengths) for p in range(1, k)})


def test_windows_need_a_causal_encoder():
    bidirectional = cfg()
    bidirectional.user_encoder.mode = "bidirectional"
    with pytest.raises(TransrecError, match="windows needs a causal user encoder"):
        Batches(stub([5, 6]), bidirectional, batch_size=2, seed=0, samples="windows")
    with pytest.raises(TransrecError, match="train.samples: expected one of"):
        Batches(stub([5, 6]), cfg(), batch_size=2, seed=0, samples="all")


def fixed_model(loss: str, **kw) -> Recommender:
    """An ID model over 4 items (item 3 dropped) whose user state is (1, 0, 0, 0) at every position, so that
    a logit is the first coordinate of the item's vector: item 0 -> 2, item 1 -> 0, item 2 -> 1, item 3 -> 5."""
    model = Recommender(cfg(max_len=2, loss=loss, **kw), "id", n_items=4)
    with torch.no_grad():
        model.items.table.weight.zero_()
        model.items.table.weight[:, 0] = torch.tensor([2.0, 0.0, 1.0, 5.0])
    model.attach(ItemFeatures(torch.tensor([TEXT, TEXT, TEXT, DROPPED]), None, torch.zeros(4, dtype=torch.long),
                              torch.full((4,), -1), None))
    model.user_states = lambda history, vectors=None: torch.tensor([1.0, 0, 0, 0]).expand(*history.shape, 4)
    return model


def test_full_cross_entropy_equals_the_hand_computation():
    model = fixed_model("ce")
    batch = {"history": torch.tensor([[-1, 1], [2, 1]]), "targets": torch.tensor([[-1, 0], [1, 2]])}
    # targets 0, 1, 2 (the padded slot has none); the dropped item 3 (logit 5) is never a candidate
    z = math.exp(2) + math.exp(0) + math.exp(1)
    expected = -(math.log(math.exp(2) / z) + math.log(math.exp(0) / z) + math.log(math.exp(1) / z)) / 3
    assert model.calculate_loss(batch).item() == pytest.approx(expected, rel=1e-6)


def test_logq_corrected_sampled_softmax_equals_the_hand_computation():
    model = fixed_model("softmax", negatives="in_batch")
    # one user, one target (item 0); candidates 1 and 2; log Q of each as a step's candidate
    batch = {"history": torch.tensor([[-1, 1]]), "targets": torch.tensor([[-1, 0]]),
             "negatives": torch.tensor([1, 2]), "neg_mask": torch.tensor([[True, True]]),
             "target_logq": torch.tensor([[0.0, math.log(0.5)]]), "neg_logq": torch.tensor([math.log(0.25), math.log(1.0)])}
    pos, n1, n2 = 2 - math.log(0.5), 0 - math.log(0.25), 1 - math.log(1.0)
    expected = -math.log(math.exp(pos) / (math.exp(pos) + math.exp(n1) + math.exp(n2)))
    assert model.calculate_loss(batch).item() == pytest.approx(expected, rel=1e-6)
    # without the correction: the plain sampled softmax over the same candidates
    plain = {k: v for k, v in batch.items() if not k.endswith("logq")}
    expected = -math.log(math.exp(2) / (math.exp(2) + math.exp(0) + math.exp(1)))
    assert model.calculate_loss(plain).item() == pytest.approx(expected, rel=1e-6)
    # a candidate that is one of the user's own items is masked out
    own = {**plain, "neg_mask": torch.tensor([[False, True]])}
    expected = -math.log(math.exp(2) / (math.exp(2) + math.exp(1)))
    assert model.calculate_loss(own).item() == pytest.approx(expected, rel=1e-6)


def test_log_q_is_the_probability_of_being_a_candidate():
    # users' training sequences: targets are s[1:]; item 5 is the target 3 times out of 6
    data = stub([2, 3, 4], n_items=10, dropped=(9,))
    data.train = Sequences(np.array([0, 2, 5, 9]), np.array([0, 5, 1, 5, 2, 3, 5, 4, 6]))
    batches = Batches(data, cfg(negatives="in_batch", n_negatives=3), batch_size=3, seed=0)
    assert batches.target_share[5] == pytest.approx(3 / 6) and batches.target_share[0] == 0
    log_q = batches.log_q(n_targets=4, k=3)
    uniform = 3 / 9  # 3 random items out of the 9 rankable ones
    assert math.exp(log_q[0]) == pytest.approx(uniform, rel=1e-5)  # never a target: the uniform part only
    assert math.exp(log_q[5]) == pytest.approx(1 - (1 - uniform) * (1 - 0.5) ** 4, rel=1e-5)
    assert log_q[9] < -20  # the dropped item is never a candidate
    shared = Batches(data, cfg(negatives="shared", n_negatives=3), batch_size=3, seed=0).log_q(4, 3)
    assert np.allclose(np.exp(shared[:9]), uniform)  # uniform negatives only: a constant (no correction)
    batch = next(batches.epoch(0))
    cand, targets = batch["negatives"].numpy(), batch["targets"].numpy()
    assert np.allclose(batch["neg_logq"].numpy(), batches.log_q(int((targets >= 0).sum()), 3)[cand])


def test_learning_rate_schedule():
    assert lr_scale(0, warmup=4, total=100, schedule="constant") == 0.25
    assert lr_scale(3, warmup=4, total=100, schedule="constant") == lr_scale(50, 4, 100, "constant") == 1.0
    assert lr_scale(3, warmup=4, total=104, schedule="cosine") == pytest.approx(1.0)
    assert lr_scale(54, warmup=4, total=104, schedule="cosine") == pytest.approx(0.5)
    assert lr_scale(104, warmup=4, total=104, schedule="cosine") == pytest.approx(0.0)
