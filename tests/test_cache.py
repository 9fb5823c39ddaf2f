"""The frozen-layer cache: `transrec cache` outputs, equivalence with the uncached path, stale-cache refusal."""
import json
from pathlib import Path

import pytest
import torch

from transrec.cli import main
from transrec.data.platform import PlatformData
from transrec.errors import TransrecError
from transrec.model import cache as frozen_cache
from transrec.model.build import build_model
from transrec.paths import cache_dir
from transrec.tiny import with_results
from transrec.train.data import Batches

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tiny_world_params):
    return tiny_world_params


def test_cache_command_writes_arrays_and_fingerprint(world, tmp_path, capsys):
    params = with_results(world, tmp_path / "results", tmp_path / "params.yaml",
                          paths={"data": str(tmp_path / "data")}, train={"cache_dtype": "float32"})
    Path(params["paths"]["data"]).mkdir()
    (Path(params["paths"]["data"]) / "processed").symlink_to(Path(world["paths"]["data"]) / "processed")
    assert main(["cache", "src", "--params", str(tmp_path / "params.yaml")]) == 0
    out = tmp_path / "data" / "cache" / "src"
    meta = json.loads((out / "cache.json").read_text())
    fp = meta["fingerprint"]
    assert fp["text"]["frozen_depth"] == 1 and fp["image"]["frozen_depth"] == 17 and fp["image"]["image_size"] == 16
    assert set(fp["inputs"]) == {"catalog.parquet", "text_ids.npy", "text_mask.npy", "images.npy"}
    data = PlatformData(Path(world["paths"]["data"]) / "processed" / "src", "src")
    text = __import__("numpy").load(out / "text.npy")
    assert text.shape == (int(data.uses_text().sum()), int(data.text_len[data.uses_text()].max()), 32)
    assert text.dtype.name == "float32"
    assert "cached text" in capsys.readouterr().out


def _loss_and_grads(model, batch):
    model.train()
    model.zero_grad()
    torch.manual_seed(5)  # the same dropout masks in both paths (the frozen bottom draws none)
    loss = model.calculate_loss(batch)
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("dtype,tol,blocks", [("float32", 1e-5, 1), ("float16", 2e-2, 1), ("float32", 1e-5, 0)])
def test_cached_training_equals_uncached(world, tmp_path, dtype, tol, blocks):
    """blocks 0: both encoders frozen, the cache pooled once at attach (items.ContentTower.attach)."""
    params = with_results(world, tmp_path / "results", paths={"data": str(tmp_path / "data")},
                          train={"cache_dtype": dtype},
                          model={"text_encoder": {"trainable_blocks": blocks}, "image_encoder": {"trainable_blocks": blocks}})
    Path(params["paths"]["data"]).mkdir()
    (Path(params["paths"]["data"]) / "processed").symlink_to(Path(world["paths"]["data"]) / "processed")
    data = PlatformData(Path(world["paths"]["data"]) / "processed" / "src", "src")
    uncached = build_model(params, data, "content", "cpu", use_cache=False, dtype=dtype)
    frozen_cache.build(uncached.items, data, cache_dir(params, "src"), dtype)
    cached = build_model(params, data, "content", "cpu", use_cache=True, dtype=dtype)
    assert cached.features.text_cache is not None and uncached.features.text_cache is None
    assert (cached.items.pooled_text is not None) == (cached.items.pooled_image is not None) == (blocks == 0)
    # from the cache with nothing trainable in them, the encoders are built as heads only
    assert cached.items.text.has_bottom == cached.items.image.has_bottom == (blocks > 0)
    batch = next(Batches(data, uncached.cfg, 16, seed=0).epoch(0))
    loss_a, grads_a = _loss_and_grads(uncached, batch)
    loss_b, grads_b = _loss_and_grads(cached, batch)
    assert grads_a.keys() == grads_b.keys() and len(grads_a) > 20
    torch.testing.assert_close(loss_b, loss_a, atol=tol, rtol=tol)
    for name in grads_a:
        torch.testing.assert_close(grads_b[name], grads_a[name], atol=tol, rtol=tol * 10, msg=name)
    cached.eval(), uncached.eval()
    torch.testing.assert_close(cached.encode_catalog(), uncached.encode_catalog(), atol=tol, rtol=tol * 10)


def test_stale_or_missing_cache_is_refused_in_one_line(world, tmp_path, capsys):
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "processed").symlink_to(Path(world["paths"]["data"]) / "processed")
    params = with_results(world, tmp_path / "results", tmp_path / "params.yaml", paths={"data": str(data_dir)},
                          train={"cache": True})
    data = PlatformData(data_dir / "processed" / "src", "src")
    with pytest.raises(TransrecError, match="no frozen-layer cache .*transrec cache src"):
        build_model(params, data, "content", "cpu", use_cache=True, dtype="float16")
    assert main(["cache", "src", "--params", str(tmp_path / "params.yaml")]) == 0
    build_model(params, data, "content", "cpu", use_cache=True, dtype="float16")  # fresh: accepted
    deeper = with_results(params, tmp_path / "results", tmp_path / "params.yaml",
                          model={"text_encoder": {"trainable_blocks": 2}})
    with pytest.raises(TransrecError, match=r"stale frozen-layer cache .*text\.frozen_depth \(1 -> 0\)"):
        build_model(deeper, data, "content", "cpu", use_cache=True, dtype="float16")
    capsys.readouterr()
    assert main(["pretrain", "--params", str(tmp_path / "params.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("transrec pretrain: error: stale frozen-layer cache") and "\n" not in err


def test_a_head_only_run_imports_no_transformers_and_checks_the_weight_files(world, tmp_path, monkeypatch):
    """trainable_blocks 0 from the cache: the encoders are not built (no transformers import), and the cache
    is still checked against the pretrained weights, by their files' hash."""
    import subprocess
    import sys

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "processed").symlink_to(Path(world["paths"]["data"]) / "processed")
    params = with_results(world, tmp_path / "results", tmp_path / "params.yaml", paths={"data": str(data_dir)},
                          model={"text_encoder": {"trainable_blocks": 0}, "image_encoder": {"trainable_blocks": 0}})
    assert main(["cache", "src", "--params", str(tmp_path / "params.yaml")]) == 0
    probe = ("import sys, yaml; from transrec.model.build import build_model; from transrec.data.platform import "
             f"PlatformData; p = yaml.safe_load(open({str(tmp_path / 'params.yaml')!r})); "
             f"m = build_model(p, PlatformData({str(data_dir / 'processed' / 'src')!r}, 'src'), 'content', 'cpu', "
             "True, 'float16'); print(m.items.text.has_bottom, m.items.image.has_bottom, "
             "'transformers' in sys.modules, m.encode_catalog().shape[0])")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.split()
    assert out[:3] == ["False", "False", "False"] and int(out[3]) > 0
    data = PlatformData(data_dir / "processed" / "src", "src")
    build_model(params, data, "content", "cpu", use_cache=True, dtype="float16")  # the same weights: accepted
    full = build_model(params, data, "content", "cpu", use_cache=True, dtype="float16", bottoms=True)  # add-items
    assert full.items.text.has_bottom and full.items.image.has_bottom
    weights = next(Path(world["model"]["text_encoder"]["name"]).glob("*.safetensors"))
    other = tmp_path / weights.name  # retrained weights in the same folder would hash like this file
    other.write_bytes(weights.read_bytes()[:-1] + bytes([weights.read_bytes()[-1] ^ 1]))
    monkeypatch.setattr(frozen_cache, "weight_files", lambda cfg: [other])
    with pytest.raises(TransrecError, match=r"stale frozen-layer cache .*text\.weights_file"):
        build_model(params, data, "content", "cpu", use_cache=True, dtype="float16")
