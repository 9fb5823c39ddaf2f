"""Item encoders, MoM batching (scatter-back order, per-step dedup), user-encoder masks, losses, negatives."""
import urllib.error

import numpy as np
import pytest
import torch

from transrec.data.platform import BOTH, DROPPED, IMAGE, TEXT, PlatformData, Sequences
from transrec.errors import TransrecError
from transrec.model.config import ImageEncoderConfig, ModelConfig, TextEncoderConfig, UserEncoderConfig
from transrec.model.image import ImageEncoder
from transrec.model.items import ItemFeatures
from transrec.model.recommender import Recommender
from transrec.model.text import TextEncoder
from transrec.model.user import UserEncoder
from transrec.tiny import tiny_bert
from transrec.train.data import Batches

SIZE = 16


@pytest.fixture(scope="module")
def bert(tmp_path_factory):
    return tiny_bert(tmp_path_factory.getbasetemp() / "tiny_world" / "bert")


def config(bert, **kw) -> ModelConfig:
    cfg = ModelConfig(d=16, user_encoder=UserEncoderConfig(layers=2, heads=2, hidden=32, max_len=6, dropout=0.1),
                      text_encoder=TextEncoderConfig(name=str(bert), trainable_blocks=1),
                      image_encoder=ImageEncoderConfig(trainable_blocks=1), item_tower="heads", loss="softmax",
                      n_negatives=4)
    for key, value in kw.items():
        setattr(cfg, key, value)
    return cfg


MODALITY = [TEXT, IMAGE, BOTH, TEXT, IMAGE, BOTH, DROPPED, TEXT, IMAGE, TEXT, IMAGE, BOTH]


def features() -> ItemFeatures:
    """12 items of every modality with random tokens (right-padded, lengths 2..7) and random pixels."""
    g = torch.Generator().manual_seed(0)
    n = len(MODALITY)
    lengths = torch.randint(2, 8, (n,), generator=g)
    ids = torch.randint(1000, 2000, (n, 8), generator=g)
    ids = ids * (torch.arange(8)[None] < lengths[:, None])
    ids[:, 0] = 101
    image_items = [i for i, m in enumerate(MODALITY) if m in (IMAGE, BOTH)]
    image_row = torch.full((n,), -1)
    image_row[image_items] = torch.arange(len(image_items))
    pixels = np.random.default_rng(0).integers(0, 256, (len(image_items), SIZE, SIZE, 3), dtype=np.uint8)
    return ItemFeatures(torch.tensor(MODALITY), ids, lengths, image_row, pixels)


def model(bert, **kw) -> Recommender:
    m = Recommender(config(bert, **kw), "content", image_size=SIZE)
    m.attach(features())
    return m


def test_text_encoder_split_and_length_groups_equal_the_hf_forward(bert):
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(bert))
    enc = tok(["red guitar concert", "a much longer title about the quantum physics laboratory", "x"],
              padding="max_length", max_length=14, truncation=True, return_tensors="pt")
    hf = AutoModel.from_pretrained(str(bert)).eval()
    with torch.no_grad():
        hidden = hf(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    lengths = enc["attention_mask"].sum(1)
    for pooling, pooled in (("mean", (hidden * mask).sum(1) / mask.sum(1)), ("cls", hidden[:, 0])):
        text = TextEncoder(TextEncoderConfig(name=str(bert), pooling=pooling, trainable_blocks=1), d=8).eval()
        assert text.frozen_depth == 1 and text.n_layers == 2
        with torch.no_grad():
            ours = text(enc["input_ids"], lengths)
            assert ours.shape == (3, 8)
            torch.testing.assert_close(ours, text.proj(pooled), atol=1e-5, rtol=1e-4)
    frozen = {n for n, p in text.named_parameters() if not p.requires_grad}
    assert frozen and all(n.startswith(("embeddings.", "bottom.")) for n in frozen)
    assert all(p.requires_grad for p in text.top.parameters())


def test_text_encoder_rejects_too_many_trainable_blocks(bert):
    with pytest.raises(TransrecError, match="outside 0..2"):
        TextEncoder(TextEncoderConfig(name=str(bert), trainable_blocks=3), d=8)


def test_efficientnet_lite0_offline_weights_load_completely():
    enc = ImageEncoder(ImageEncoderConfig(trainable_blocks=2), d=8, image_size=SIZE)
    report = enc.load_report
    assert report["tensors"] == 296 and report["missing"] == [] and report["unexpected"] == []
    assert len(enc.units) == 18 and enc.frozen_depth == 16  # stem + 16 MBConv blocks + head
    trainable = {n.split(".")[1] for n, p in enc.named_parameters() if p.requires_grad and n.startswith("units.")}
    assert trainable == {"16", "17"}
    enc.train()
    assert all(not m.training for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d))
    out = enc(torch.randint(0, 256, (3, SIZE, SIZE, 3), dtype=torch.uint8))
    assert out.shape == (3, 8)


def test_a_head_only_image_encoder_has_the_networks_sizes():
    from transrec.model.image import LITE0_FEATURES, LITE0_UNITS

    cfg = ImageEncoderConfig(trainable_blocks=0)
    torch.manual_seed(0)
    full = ImageEncoder(cfg, d=8, image_size=32)
    torch.manual_seed(0)
    head = ImageEncoder(cfg, d=8, image_size=32, frozen_bottom=False)
    assert (full.n_units, full.feature_dim) == (head.n_units, head.feature_dim) == (LITE0_UNITS, LITE0_FEATURES)
    assert full.has_bottom and not head.has_bottom
    assert set(head.state_dict()) == {f"proj.{k}" for k in full.proj.state_dict()}  # the head, nothing else
    torch.testing.assert_close(head.proj[1].weight, full.proj[1].weight)  # same init: the network draws no seed
    with pytest.raises(TransrecError, match="without its frozen bottom"):
        head.bottom_forward(torch.zeros(1, 32, 32, 3, dtype=torch.uint8))


def test_torchvision_models_by_name_and_offline_error(monkeypatch):
    enc = ImageEncoder(ImageEncoderConfig(name="resnet18", trainable_blocks=2, pretrained=False), d=8, image_size=32)
    assert len(enc.units) == 9 and enc.frozen_depth == 7 and enc.feature_dim == 512  # stem + 8 residual blocks
    assert enc(torch.zeros(2, 32, 32, 3, dtype=torch.uint8)).shape == (2, 8)
    import torchvision

    def offline(**_):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(torchvision.models, "get_model_builder", lambda name: offline)
    with pytest.raises(TransrecError) as err:
        ImageEncoder(ImageEncoderConfig(name="resnet18", pretrained=True), d=8, image_size=32)
    assert "network" in str(err.value) and "\n" not in str(err.value)


def test_scatter_back_matches_a_naive_per_position_loop(bert):
    for fusion in ("sum", "concat"):
        m = model(bert, fusion=fusion).eval()
        ids = torch.tensor([[-1, -1, 0, 3, 1, 5], [2, 2, 4, 9, 11, 0], [-1, 7, 8, 10, 1, 2]])
        with torch.no_grad():
            fast = m.item_vectors(ids)
            naive = torch.zeros_like(fast)
            for b in range(ids.shape[0]):
                for j in range(ids.shape[1]):
                    if ids[b, j] >= 0:
                        naive[b, j] = m.items(ids[b, j].view(1))[0]
        torch.testing.assert_close(fast, naive, atol=1e-5, rtol=1e-4)
        assert fast[0, 0].abs().sum() == 0  # padding -> zero vector


def test_each_distinct_item_is_encoded_once_per_step(bert):
    m = model(bert).train()
    history = torch.tensor([[-1, 0, 1, 2, 0, 1], [3, 3, 4, 5, 0, 9]])
    targets = torch.tensor([[-1, 1, 2, 0, 1, 7], [3, 4, 5, 0, 9, 10]])
    negatives = torch.tensor([11, 8, 0, 7])
    batch = {"history": history, "targets": targets, "negatives": negatives,
             "neg_mask": torch.ones(2, 4, dtype=torch.bool)}
    m.items.text.rows_encoded = m.items.image.rows_encoded = 0
    loss = m.calculate_loss(batch)
    distinct = torch.unique(torch.cat([history.flatten(), targets.flatten(), negatives]))
    distinct = distinct[distinct >= 0].tolist()
    mod = [MODALITY[i] for i in distinct]
    assert m.items.text.rows_encoded == sum(x in (TEXT, BOTH) for x in mod) == 7
    assert m.items.image.rows_encoded == sum(x in (IMAGE, BOTH) for x in mod) == 7
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is None for n, p in m.named_parameters() if n.startswith(tuple(m.frozen_prefixes())))
    assert m.items.text.top[0].attention.self.query.weight.grad.abs().sum() > 0
    assert m.items.image.units[-1].conv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("mode", ["causal", "bidirectional"])
def test_user_encoder_masks(mode):
    torch.manual_seed(0)
    enc = UserEncoder(UserEncoderConfig(mode=mode, layers=2, heads=2, hidden=32, max_len=6, dropout=0.0), 16).eval()
    x = torch.randn(2, 6, 16)
    valid = torch.tensor([[False, False, True, True, True, True], [True] * 6])
    out = enc(x, valid)
    future = x.clone()
    future[:, -1] += 5.0  # change the last (most recent) item
    out_future = enc(future, valid)
    if mode == "causal":
        torch.testing.assert_close(out[:, :-1], out_future[:, :-1])  # earlier positions never see it
    else:
        assert not torch.allclose(out[:, :-1], out_future[:, :-1])
    assert not torch.allclose(out[:, -1], out_future[:, -1])
    padded = x.clone()
    padded[0, :2] = torch.randn(2, 16) * 10  # padding content never matters
    torch.testing.assert_close(enc(padded, valid)[0, 2:], out[0, 2:])


@pytest.mark.parametrize("loss", ["bce", "softmax", "ce"])
@pytest.mark.parametrize("mode", ["causal", "bidirectional"])
def test_losses_train_in_both_modes(bert, loss, mode):
    m = model(bert, loss=loss)
    m.cfg.user_encoder.mode = mode
    if mode == "causal":
        history = torch.tensor([[-1, 0, 1, 2, 3, 4], [5, 7, 8, 9, 10, 11]])
        targets = torch.tensor([[-1, 1, 2, 3, 4, 5], [7, 8, 9, 10, 11, 0]])
        negatives = torch.tensor([[[7, 8]] * 6, [[1, 2]] * 6])
        negatives[0, 0] = -1
    else:
        history = torch.tensor([[-1, -1, 0, 1, 2, 3], [5, 7, 8, 9, 10, 11]])
        targets = torch.tensor([[4], [0]])
        negatives = torch.tensor([[[7, 8]], [[1, 2]]])
    m.eval()  # no dropout: the loss of a fixed batch must then go down step by step
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    batch = {"history": history, "targets": targets, "negatives": negatives}
    values = []
    for _ in range(6):
        value = m.calculate_loss(batch)
        values.append(float(value.detach()))
        value.backward()
        opt.step()
        opt.zero_grad()
    assert all(np.isfinite(values)) and values[-1] < values[0]


def _stub_data(n_users=30, n_items=40) -> PlatformData:
    rng = np.random.default_rng(3)
    lengths = rng.integers(3, 15, n_users)
    items = np.concatenate([rng.choice(n_items - 2, size=k, replace=False) for k in lengths])
    d = object.__new__(PlatformData)
    d.name, d.n_items = "stub", n_items
    d.modality = np.full(n_items, TEXT)
    d.modality[-2:] = DROPPED
    d.pool = np.flatnonzero(d.modality != DROPPED)
    d.train = Sequences(np.concatenate([[0], np.cumsum(lengths)]), items)
    return d


@pytest.mark.parametrize("negatives", ["per_position", "shared", "in_batch"])
@pytest.mark.parametrize("mode", ["causal", "bidirectional"])
def test_batches_align_targets_and_never_sample_own_items(negatives, mode):
    d = _stub_data()
    cfg = ModelConfig(user_encoder=UserEncoderConfig(mode=mode, max_len=6), loss="softmax", negatives=negatives,
                      n_negatives=30, n_positives=2)
    batches = Batches(d, cfg, batch_size=8, seed=0, samples="last")  # one sample per user (test_recipe: windows)
    order = batches.epoch_samples(0)[0]  # the epoch's user order
    seen_users = 0
    for k, batch in enumerate(batches.epoch(0)):
        h, t, neg = batch["history"].numpy(), batch["targets"].numpy(), batch["negatives"].numpy()
        for b, user in enumerate(order[k * 8:(k + 1) * 8]):
            seq = d.train.get(user)
            own = set(seq.tolist())
            real = h[b][h[b] >= 0]
            if mode == "causal":  # history = s[:-1] (last N), target j = the item after history j
                assert real.tolist() == seq[:-1][-6:].tolist()
                assert t[b][h[b] >= 0].tolist() == seq[1:][-6:].tolist()
            else:  # history = s[:cut] (last N), positives = the next clicks s[cut:cut + 2]
                cut = next(c for c in range(1, len(seq)) if seq[:c][-6:].tolist() == real.tolist())
                assert t[b][t[b] >= 0].tolist() == seq[cut:cut + 2].tolist()
            if neg.ndim == 1:
                allowed = neg[batch["neg_mask"].numpy()[b]]
                assert own.isdisjoint(allowed.tolist())
                assert len(allowed) > 0
            else:
                drawn = neg[b][neg[b] >= 0]
                assert own.isdisjoint(drawn.tolist()) and len(drawn) > 0
                assert (neg[b][t[b] < 0] == -1).all()  # no target, no negatives to encode
            assert not set(neg[neg >= 0].tolist()) & {38, 39}  # dropped items are never sampled
            seen_users += 1
    assert seen_users == len(batches.eligible)


@pytest.mark.parametrize("negatives", ["per_position", "shared", "in_batch", "ce"])
def test_rank_shards_average_to_the_global_batch_gradient(negatives):
    """What DDP computes (the mean over ranks of each rank's gradient) equals the one-process gradient."""
    d = _stub_data()
    cfg = ModelConfig(d=8, user_encoder=UserEncoderConfig(layers=1, heads=2, hidden=16, max_len=6, dropout=0.0),
                      loss="ce" if negatives == "ce" else "softmax",
                      negatives="shared" if negatives == "ce" else negatives, n_negatives=5)
    m = Recommender(cfg, "id", n_items=d.n_items).eval()
    m.attach(ItemFeatures(torch.from_numpy(d.modality), None, torch.zeros(d.n_items, dtype=torch.long),
                          torch.full((d.n_items,), -1), None))
    batches = Batches(d, cfg, batch_size=9, seed=0)

    def grads(batch):
        m.zero_grad()
        m.calculate_loss(batch).backward()
        return [p.grad.clone() for p in m.parameters()]

    whole = grads(next(batches.epoch(0)))
    shards = [grads(next(batches.epoch(0, rank=r, world=3))) for r in range(3)]
    for g, *per_rank in zip(whole, *shards):
        torch.testing.assert_close(sum(per_rank) / 3, g, atol=1e-6, rtol=1e-5)


def test_lora_adapts_only_the_trainable_blocks_and_merges_exactly(bert):
    from transrec.model import checkpoint as ckpt
    from transrec.model import lora

    m = model(bert).eval()
    plain_keys = set(ckpt.model_state(m))
    before = {k: v.clone() for k, v in m.state_dict().items()}
    adapted = lora.add_adapters(m, rank=2, alpha=4, dropout=0.0)
    layers = lora.adapted_layers(m)
    assert adapted == len(layers) > 0
    assert {n.split(".")[1] for n in layers} == {"text", "image"}
    assert all(n.startswith("items.text.top.") and n.rsplit(".", 1)[-1] in ("query", "value")
               for n in layers if ".text." in n)
    assert all(n.startswith(f"items.image.units.{m.items.image.frozen_depth}.") for n in layers if ".image." in n)
    trainable = {n for n, p in m.named_parameters() if p.requires_grad}
    assert not any(n.startswith(("items.text.top.", "items.image.units.")) and "lora_" not in n for n in trainable)
    assert any(n.startswith("items.text.proj") for n in trainable) and any(n.startswith("user.") for n in trainable)
    groups = {g["name"]: g for g in m.param_groups(1e-3, 1e-4, 0.0)}
    assert "encoder_top" not in groups  # adapters learn at lr; the blocks' own weights do not train
    with torch.no_grad():
        torch.testing.assert_close(m.encode_catalog(), Recommender.encode_catalog(m))  # B = 0: no change yet
        for layer in layers.values():
            layer.lora_B["default"].weight.normal_(0, 0.5)
        out = m.encode_catalog()
    state = ckpt.model_state(m)  # merged: the plain model's keys
    assert set(state) == plain_keys
    raw = ckpt.model_state(m, merge_adapters=False)
    assert any("lora_A" in k for k in raw) and not any("lora_" in k for k in state)
    changed = {k for k in state if not torch.equal(state[k], before[k])}
    assert changed and all(k.rsplit(".", 2)[-2] in ("query", "value") or "conv" in k for k in changed)
    plain = model(bert).eval()
    assert ckpt.load_into(plain, {"format": ckpt.FORMAT, "state": state})["counts"]["unused"] == 0
    with torch.no_grad():
        torch.testing.assert_close(plain.encode_catalog(), out, atol=1e-5, rtol=1e-4)
    lora.remove_adapters(m)
    assert not lora.adapted_layers(m) and set(ckpt.model_state(m)) == plain_keys


def test_lora_on_a_model_without_trainable_blocks_is_one_line(bert):
    from transrec.model import lora

    m = model(bert, text_encoder=TextEncoderConfig(name=str(bert), trainable_blocks=0),
              image_encoder=ImageEncoderConfig(trainable_blocks=0))
    with pytest.raises(TransrecError, match="trainable_blocks >= 1") as err:
        lora.add_adapters(m, rank=2, alpha=4, dropout=0.0)
    assert "\n" not in str(err.value)
