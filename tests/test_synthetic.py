"""The embedded synthetic world: seeded, platforms disjoint, semantics shared, order informative."""
from __future__ import annotations

import collections

import polars as pl

from transrec.platforms import synthetic

WORLD = {"seed": 7, "n_topics": 8}


def gen(tmp_path, name, **cfg):
    base = {"seed": 1, "n_users": 80, "n_items": 60, "text_fraction": 0.5, "history": [5, 12], "domain_shift": 0.0}
    base.update(cfg)
    out = tmp_path / name
    counts = synthetic.generate(out, WORLD, base, key_prefix=f"{name}-")
    return out, counts


def test_same_seed_same_platform_and_counts(tmp_path):
    a, ca = gen(tmp_path, "a")
    b, cb = gen(tmp_path / "again", "a")
    assert ca == cb
    assert (a / "interactions.csv").read_bytes() == (b / "interactions.csv").read_bytes()
    assert (a / "items.csv").read_bytes() == (b / "items.csv").read_bytes()
    assert (a / "images" / "a-000003.jpg").read_bytes() == (b / "images" / "a-000003.jpg").read_bytes()
    inter = pl.read_csv(a / "interactions.csv")
    assert inter.height == ca["interactions"] and inter["user_id"].n_unique() == 80


def test_platforms_share_words_but_no_users_or_items(tmp_path):
    a, _ = gen(tmp_path, "a", seed=1)
    b, _ = gen(tmp_path, "b", seed=2)
    ia, ib = pl.read_csv(a / "items.csv"), pl.read_csv(b / "items.csv")
    assert not set(ia["item_id"]) & set(ib["item_id"])
    ua, ub = pl.read_csv(a / "interactions.csv"), pl.read_csv(b / "interactions.csv")
    assert not set(ua["user_id"]) & set(ub["user_id"])
    words = lambda f: {w.lower() for t in f["title"] for w in t.split()}  # noqa: E731
    shared = words(ia) & words(ib)
    assert len(shared) > 0.5 * min(len(words(ia)), len(words(ib)))


def test_modality_mix_follows_text_fraction(tmp_path):
    text_only, _ = gen(tmp_path, "t", text_fraction=1.0)
    image_only, _ = gen(tmp_path, "i", text_fraction=0.0)
    assert set(pl.read_csv(text_only / "items.csv")["modality"]) == {"text"}
    assert set(pl.read_csv(image_only / "items.csv")["modality"]) == {"image"}


def test_order_carries_signal_and_timestamps_tie(tmp_path):
    out, _ = gen(tmp_path, "a", n_users=300, n_items=120)
    inter = pl.read_csv(out / "interactions.csv")
    # The most frequent successor of an item predicts the next click far above chance.
    pairs = collections.Counter()
    firsts = collections.Counter()
    for seq in inter.group_by("user_id", maintain_order=True).agg("item_id")["item_id"]:
        for x, y in zip(seq[:-1], seq[1:]):
            pairs[(x, y)] += 1
            firsts[x] += 1
    best = collections.defaultdict(int)
    for (x, _), n in pairs.items():
        best[x] = max(best[x], n)
    hit_rate = sum(best.values()) / sum(firsts.values())
    assert hit_rate > 5 / 120, hit_rate
    ties = inter.group_by("user_id", "timestamp").len().filter(pl.col("len") > 1).height
    assert ties > 0


def test_domain_shift_changes_topic_mix_and_style(tmp_path):
    plain, _ = gen(tmp_path, "p", seed=3, domain_shift=0.0)
    shifted, _ = gen(tmp_path, "s", seed=3, domain_shift=1.0)
    generic = set(synthetic.GENERIC)
    share = lambda f: sum(w.lower() in generic for t in f["title"] for w in t.split()) / sum(len(t.split()) for t in f["title"])  # noqa: E731
    assert share(pl.read_csv(shifted / "items.csv")) > share(pl.read_csv(plain / "items.csv")) + 0.2


def test_block_table_draws_the_full_tables_distribution():
    """A large topic's two-level sampler (BlockTable) draws item i with probability pop_i * taste[sub_i] / sum,
    the distribution of the full cumulative table it replaces, blocks and block edges included."""
    import numpy as np

    rng = np.random.default_rng(0)
    n = 3 * synthetic.BlockTable.BLOCK + 17  # a partial last block
    pop = rng.zipf(1.6, size=n).clip(max=200).astype(float)
    sub = rng.integers(synthetic.N_SUBTOPICS, size=n)
    taste = np.array([0.6, 0.3, 0.1])
    table = synthetic.BlockTable(pop, sub)
    cum = table.user_blocks(taste)
    draws = np.array([table.draw(rng, cum, taste) for _ in range(60_000)])
    expected = pop * taste[sub] / (pop * taste[sub]).sum()
    observed = np.bincount(draws, minlength=n) / len(draws)
    assert draws.min() >= 0 and draws.max() < n
    assert np.abs(observed - expected).max() < 0.004
    # by block and by subtopic, sharper: sums of many items
    blocks = np.arange(n) // synthetic.BlockTable.BLOCK
    for key in (blocks, sub):
        assert np.allclose(np.bincount(key, observed), np.bincount(key, expected), atol=0.006)


def test_small_topics_keep_the_full_table(tmp_path, monkeypatch):
    """Below EXACT_POOL items a topic the original sampler runs: such platforms are byte-identical to those of
    the code before BlockTable (digest from that revision, 1d1f763). Every topic through BlockTable gives the
    same platform too: it finds the same item for the same uniform (the two differ only where float rounding
    moves a cumulative boundary past the uniform; none here), so EXACT_POOL is a guarantee, not a difference."""
    import hashlib

    cfg = {"seed": 3, "n_users": 200, "n_items": 300, "history": [5, 12]}
    synthetic.generate(tmp_path / "a", WORLD, cfg, "x-", workers=1)
    digest = hashlib.sha256((tmp_path / "a" / "interactions.csv").read_bytes()).hexdigest()
    assert digest == "417c119e6e62b73000468eeead4e60f4fa4a0f033d0bf67ccaa9baff4797ff36"
    monkeypatch.setattr(synthetic, "EXACT_POOL", 0)  # every topic through BlockTable
    synthetic.generate(tmp_path / "b", WORLD, cfg, "x-", workers=1)
    assert hashlib.sha256((tmp_path / "b" / "interactions.csv").read_bytes()).hexdigest() == digest
