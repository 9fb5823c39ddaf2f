"""The side-adapter item tower (model.item_tower: side) and its layer-state cache, on the tiny world."""
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from transrec.cli import main
from transrec.data.platform import BOTH, PlatformData
from transrec.errors import TransrecError
from transrec.model import cache as layer_cache
from transrec.model import checkpoint as ckpt
from transrec.model.build import build_model
from transrec.model.config import ModelConfig
from transrec.model.image import LITE0_WIDTHS, ImageEncoder
from transrec.model.side import SideStream
from transrec.paths import cache_dir
from transrec.tiny import with_results
from transrec.train.data import Batches

SIDE = {"item_tower": "side", "text_encoder": {"trainable_blocks": 0}, "image_encoder": {"trainable_blocks": 0}}


def side_params(world, tmp_path, path=None, model=None, train=None):
    """Tiny params with the side tower; data in tmp_path/data (the processed platforms linked), so each
    test has its own cache folder."""
    data_dir = tmp_path / "data"
    if not data_dir.exists():
        data_dir.mkdir()
        (data_dir / "processed").symlink_to(Path(world["paths"]["data"]) / "processed")
    model = {**SIDE, **(model or {})}
    return with_results(world, tmp_path / "results", path, paths={"data": str(data_dir)}, model=model,
                        train={"cache_dtype": "float32", **(train or {})})


def platform(params, name="src") -> PlatformData:
    return PlatformData(Path(params["paths"]["data"]) / "processed" / name, name)


def test_layer_states_are_the_encoders_own_hidden_states(tiny_world_params, tmp_path):
    """Text: the mean over real tokens of every hidden state transformers returns (a padded batch with an
    attention mask: an independent computation), to 1e-5. Image: the last unit's state is the heads tower's
    pooled feature; the unit widths are Lite0's (LITE0_WIDTHS, used when the network is not built)."""
    from transformers import AutoModel

    params = side_params(tiny_world_params, tmp_path)
    data = platform(params)
    model = build_model(params, data, "content", "cpu", use_cache=False, dtype="float32")
    tower = model.items
    items = np.flatnonzero(data.uses_text())[:8]
    ids = torch.from_numpy(np.asarray(data.text_ids[items], dtype=np.int64))
    lengths = torch.from_numpy(data.text_len[items])
    states = tower.text.layer_states(ids, lengths)
    bert = AutoModel.from_pretrained(params["model"]["text_encoder"]["name"]).eval()
    mask = (torch.arange(ids.shape[1])[None] < lengths[:, None]).long()
    with torch.no_grad():
        hidden = bert(input_ids=ids, attention_mask=mask, output_hidden_states=True).hidden_states
    expected = torch.stack([(h * mask[..., None]).sum(1) / mask.sum(1, keepdim=True) for h in hidden], dim=1)
    assert states.shape == (8, bert.config.num_hidden_layers + 1, bert.config.hidden_size)
    torch.testing.assert_close(states, expected, atol=1e-5, rtol=1e-4)

    pixels = torch.from_numpy(np.array(data.images[:5]))
    image_states = tower.image.layer_states(pixels)
    assert tower.image.unit_widths == LITE0_WIDTHS and image_states.shape == (5, sum(LITE0_WIDTHS))
    heads = ImageEncoder(tower.image.cfg, 8, data.image_size)
    torch.testing.assert_close(image_states[:, -LITE0_WIDTHS[-1]:], heads.pooled(heads.bottom_forward(pixels)))
    assert ImageEncoder(tower.image.cfg, 8, 64).unit_widths == LITE0_WIDTHS  # the widths do not depend on the size


def test_cache_command_stores_every_layer_state_and_they_equal_the_live_ones(tiny_world_params, tmp_path, capsys):
    params = side_params(tiny_world_params, tmp_path, tmp_path / "params.yaml")
    assert main(["cache", "src", "--params", str(tmp_path / "params.yaml")]) == 0
    assert "layer states text" in capsys.readouterr().out
    out = cache_dir(params, "src")
    meta = json.loads((out / "cache.json").read_text())
    assert meta["fingerprint"]["tower"] == "side" and meta["fingerprint"]["text"]["pooling"] == "mean"
    data = platform(params)
    text = np.load(out / "layers_text.npy", mmap_mode="r")
    image = np.load(out / "layers_image.npy", mmap_mode="r")
    assert text.shape == (int(data.uses_text().sum()), 3 * 32) and text.dtype == np.float32  # 2 layers + embeddings
    assert image.shape == (len(data.images), sum(LITE0_WIDTHS))
    assert meta["text"]["bytes_per_item"] == 3 * 32 * 4 and meta["image"]["bytes_per_item"] == sum(LITE0_WIDTHS) * 4
    live = build_model(params, data, "content", "cpu", use_cache=False, dtype="float32").items
    items = np.flatnonzero(data.uses_text())
    ids = torch.from_numpy(np.asarray(data.text_ids[items], dtype=np.int64))
    expected = live.text.layer_states(ids, torch.from_numpy(data.text_len[items])).flatten(1)
    torch.testing.assert_close(torch.from_numpy(np.array(text)), expected, atol=1e-6, rtol=1e-5)
    expected = live.image.layer_states(torch.from_numpy(np.array(data.images)))
    torch.testing.assert_close(torch.from_numpy(np.array(image)), expected, atol=1e-6, rtol=1e-5)


def test_the_tower_starts_where_documented():
    """Gates at sigmoid(0) = 0.5, adapters the identity: the stream is 1/2 P_3 x_3 + 1/4 P_2 x_2 + 1/4 P_1 x_1."""
    torch.manual_seed(0)
    stream = SideStream([5, 6, 7], 4, 2, 0.0)
    x = [torch.randn(3, w) for w in (5, 6, 7)]
    p = [layer(v) for layer, v in zip(stream.inputs, x)]
    assert torch.equal(torch.sigmoid(stream.gates), torch.full((2,), 0.5))
    out = stream(x)
    torch.testing.assert_close(out[:, -1], 0.5 * p[2] + 0.25 * p[1] + 0.25 * p[0])
    torch.testing.assert_close(out[:, 0], p[0])


def test_a_both_item_starts_as_its_text_plus_its_image_vector(tiny_world_params, tmp_path):
    """The inter-modal stream's head starts at zero; then it learns (its weights get gradients)."""
    params = side_params(tiny_world_params, tmp_path)
    data = platform(params)
    model = build_model(params, data, "content", "cpu", use_cache=False, dtype="float32")
    f = model.features
    text_item = int(np.flatnonzero(data.uses_text())[0])
    image_item = int(np.flatnonzero(data.image_row >= 0)[0])
    f.modality[text_item], f.image_row[text_item] = BOTH, f.image_row[image_item]  # text item with a poster
    model.eval()
    both = model.items(torch.tensor([text_item]))
    f.modality[text_item] = 1  # TEXT
    text_only = model.items(torch.tensor([text_item]))
    image_only = model.items(torch.tensor([image_item]))
    torch.testing.assert_close(both, text_only + image_only)
    f.modality[text_item] = BOTH
    model.train()
    model.items(torch.tensor([text_item, image_item])).pow(2).sum().backward()
    assert model.items.inter_head[-1].weight.grad.abs().sum() > 0


def test_no_gradient_reaches_a_frozen_encoder_weight(tiny_world_params, tmp_path):
    params = side_params(tiny_world_params, tmp_path)
    data = platform(params)
    model = build_model(params, data, "content", "cpu", use_cache=False, dtype="float32")  # encoders run live
    batch = next(Batches(data, model.cfg, 16, seed=0).epoch(0))
    model.train()
    model.calculate_loss(batch).backward()
    encoders = [(n, p) for n, p in model.named_parameters() if n.startswith(("items.text.", "items.image."))]
    assert len(encoders) > 100
    assert all(not p.requires_grad and p.grad is None for _, p in encoders)
    side = [n for n, p in model.named_parameters() if n.startswith("items.") and p.grad is not None]
    assert any(n.startswith("items.text_stream.") for n in side) and any(n.startswith("items.image_stream.") for n in side)
    assert model.items.encoder_top_parameters() == []
    state = ckpt.model_state(model)  # a checkpoint holds the side network, never the encoders
    assert not any(k.startswith(("items.text.", "items.image.")) for k in state)


@pytest.mark.parametrize("dtype,tol", [("float32", 1e-5), ("float16", 2e-2)])
def test_training_from_the_cache_equals_running_the_encoders(tiny_world_params, tmp_path, dtype, tol):
    params = side_params(tiny_world_params, tmp_path, train={"cache_dtype": dtype})
    data = platform(params)
    live = build_model(params, data, "content", "cpu", use_cache=False, dtype=dtype)
    layer_cache.build(live.items, data, cache_dir(params, "src"), dtype)
    cached = build_model(params, data, "content", "cpu", use_cache=True, dtype=dtype)
    assert cached.features.text_layers is not None and not cached.items.text.has_bottom  # no encoder built
    batch = next(Batches(data, live.cfg, 16, seed=0).epoch(0))
    grads = []
    for model in (live, cached):
        model.train()
        model.zero_grad()
        torch.manual_seed(5)  # the same dropout masks in both
        loss = model.calculate_loss(batch)
        loss.backward()
        grads.append((loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (loss_a, grads_a), (loss_b, grads_b) = grads
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 20
    torch.testing.assert_close(loss_b, loss_a, atol=tol, rtol=tol)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=tol, rtol=tol * 10, msg=name)


def test_cached_and_live_runs_give_the_same_metrics(tiny_world_params, tmp_path):
    """End to end through the CLI: `transrec cache` + a run from the cache, and a run with the encoders
    running every step (train.cache: false), same seed: the same validation curve and test metrics."""
    metrics = {}
    for cache in (True, False):
        folder = tmp_path / str(cache)
        folder.mkdir()
        params = side_params(tiny_world_params, folder, folder / "params.yaml", train={"cache": cache})
        p = ["--params", str(folder / "params.yaml")]
        if cache:
            assert main(["cache", "tgt", *p]) == 0
        assert main(["transfer", "tgt", "scratch", *p]) == 0
        log = json.loads((Path(params["paths"]["results"]) / "models" / "tgt" / "scratch" / "train_log.json").read_text())
        assert log["cache"] == cache and log["steps"] >= 4
        metrics[cache] = log
    for a, b in zip(metrics[True]["evaluations"], metrics[False]["evaluations"]):
        assert a["valid"] == pytest.approx(b["valid"], abs=1e-6) and a["loss"] == pytest.approx(b["loss"], rel=1e-5)
    assert metrics[True]["test"] == pytest.approx(metrics[False]["test"], abs=1e-6)


def test_a_stale_or_foreign_cache_stops_the_run_in_one_line(tiny_world_params, tmp_path, capsys):
    params = side_params(tiny_world_params, tmp_path, tmp_path / "params.yaml")
    data = platform(params)
    with pytest.raises(TransrecError, match="no layer-state cache .*transrec cache src"):
        build_model(params, data, "content", "cpu", use_cache=True, dtype="float32")
    assert main(["cache", "src", "--params", str(tmp_path / "params.yaml")]) == 0
    build_model(params, data, "content", "cpu", use_cache=True, dtype="float32")  # fresh: accepted
    cls = side_params(tiny_world_params, tmp_path, model={"text_encoder": {"trainable_blocks": 0, "pooling": "cls"}})
    with pytest.raises(TransrecError, match=r"stale layer-state cache .*text\.pooling \('mean' -> 'cls'\)"):
        build_model(cls, data, "content", "cpu", use_cache=True, dtype="float32")
    heads = side_params(tiny_world_params, tmp_path, tmp_path / "heads.yaml", model={"item_tower": "heads"})
    with pytest.raises(TransrecError, match=r"stale frozen-layer cache .*tower \('side' -> 'heads'\)"):
        build_model(heads, data, "content", "cpu", use_cache=True, dtype="float32")
    capsys.readouterr()
    assert main(["pretrain", "--params", str(tmp_path / "heads.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("transrec pretrain: error: stale frozen-layer cache") and "\n" not in err


def test_bad_side_configurations_are_one_line(tiny_world_params, tmp_path, capsys):
    with pytest.raises(TransrecError, match="item_tower: side reads the layer states of frozen encoders"):
        ModelConfig.from_dict({**tiny_world_params["model"], "item_tower": "side"})  # trainable blocks 1
    side_params(tiny_world_params, tmp_path, tmp_path / "params.yaml", model={"item_tower": "sides"})
    assert main(["validate", "--params", str(tmp_path / "params.yaml")]) == 2
    assert "item_tower" in capsys.readouterr().err


@pytest.fixture(scope="module")
def transferred(tiny_world_params, tmp_path_factory):
    """Every setting with the side tower, from the layer-state cache: pretrain, then finetune, frozen,
    zero_shot on tgt; lora is refused."""
    root = tmp_path_factory.mktemp("side")
    params = side_params(tiny_world_params, root, root / "params.yaml")
    p = ["--params", str(root / "params.yaml")]
    for name in ("src", "tgt"):
        assert main(["cache", name, *p]) == 0
    assert main(["pretrain", *p]) == 0
    for setting in ("finetune", "frozen", "zero_shot"):
        assert main(["transfer", "tgt", setting, *p]) == 0
    return params, p, Path(params["paths"]["results"]) / "models"


def test_every_transfer_setting_runs_and_lora_refuses(transferred, capsys):
    params, p, models = transferred
    logs = {s: json.loads((models / "tgt" / s / "train_log.json").read_text()) for s in ("finetune", "frozen", "zero_shot")}
    source = json.loads((models / "src" / "pretrain" / "train_log.json").read_text())
    data = platform(params, "tgt")
    model = build_model(params, data, "content", "cpu", use_cache=True, dtype="float32")
    side = sum(p.numel() for n, p in model.named_parameters() if n.startswith("items."))
    user = sum(p.numel() for n, p in model.named_parameters() if n.startswith("user."))
    assert source["trainable_parameters"] == logs["finetune"]["trainable_parameters"] == side + user
    assert logs["frozen"]["trainable_parameters"] == user and logs["zero_shot"]["trainable_parameters"] == 0
    assert logs["finetune"]["load_report"]["counts"]["not_loaded"] == 0  # every side weight came from the source
    assert all(log["cache"] for log in logs.values())
    capsys.readouterr()
    assert main(["transfer", "tgt", "lora", *p]) == 2
    err = capsys.readouterr().err.strip()
    assert "model.item_tower: side keeps the encoders frozen" in err and "\n" not in err


def test_a_heads_source_model_is_refused_by_a_side_target(transferred, tiny_world_params, tmp_path):
    params, _, models = transferred
    heads = with_results(tiny_world_params, tmp_path / "results")
    source = build_model(heads, platform(heads), "content", "cpu", use_cache=False, dtype="float32")
    target = build_model(params, platform(params, "tgt"), "content", "cpu", use_cache=True, dtype="float32")
    payload = {"format": ckpt.FORMAT, "kind": "content", "model_config": source.cfg.to_dict(),
               "state": ckpt.model_state(source)}
    with pytest.raises(TransrecError, match="its encoders .* differ from this model's"):
        ckpt.load_into(target, payload, "heads.pt", transfer=True)


def test_new_items_get_their_layer_states_from_the_encoders(transferred, tmp_path, capsys):
    """add-items runs the encoders on the fly: a copy of a catalogue item (same text or image, new key) gets
    the vector its twin gets from the cache (float32 cache: to 1e-5); recommend and export read the model."""
    params, p, models = transferred
    model = models / "tgt" / "finetune"
    items = pl.read_parquet(Path(params["paths"]["data"]) / "processed" / "tgt" / "items.parquet")
    twins = items.filter(pl.col("modality") != "dropped").head(6)
    assert set(twins["modality"]) == {"text", "image"}
    twins.select(("new-" + pl.col("key")).alias("key"), "title", "text", "image", "modality").write_csv(tmp_path / "new.csv")
    assert main(["add-items", "--model", str(model), "--platform", "tgt", "--items", str(tmp_path / "new.csv"), *p]) == 0
    stored = pl.read_parquet(model / "model" / "added" / "tgt.parquet")  # added items travel in the model folder
    from transrec.recommend import catalogue, load

    net, data, _ = load(params, model, "tgt")
    assert net.features.text_layers is not None  # the catalogue from the cache
    cat = catalogue(net, data, None)
    for key, vector in zip(stored["key"].to_list(), stored["vector"].to_list()):
        twin = cat.index([key[len("new-"):]])[0]
        np.testing.assert_allclose(vector, cat.vectors[twin].numpy(), atol=1e-5, err_msg=key)
    capsys.readouterr()
    assert main(["recommend", "--model", str(model), "--platform", "tgt", "--history", ",".join(stored["key"][:2]),
                 "--json", *p]) == 0
    assert json.loads(capsys.readouterr().out)["recommendations"]
    assert main(["export", "--model", str(model), "--platform", "tgt", "--k", "5", *p]) == 0
    from transrec.export import output_file

    top = pl.read_parquet(output_file(params, model, "tgt"))
    assert top.height == 5 * top["user"].n_unique() and top["item"].is_in(stored["key"].to_list()).any()
