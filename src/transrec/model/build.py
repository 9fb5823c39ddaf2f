"""A platform's model: built from params, its catalogue attached (through the frozen-layer cache when
train.cache is on), and a trained model loaded from its model folder. Training, evaluation,
recommendation and export all build and load models here."""
from __future__ import annotations

from pathlib import Path

from transrec.data.platform import PlatformData
from transrec.errors import TransrecError
from transrec.model import cache as frozen_cache
from transrec.model import checkpoint as ckpt
from transrec.model.config import ModelConfig
from transrec.model.items import item_features
from transrec.model.recommender import Recommender
from transrec.paths import cache_dir, processed_dir


def build_model(params: dict, data: PlatformData, kind: str, device, use_cache: bool, dtype: str,
                cfg: ModelConfig | None = None, bottoms: bool = False) -> Recommender:
    """bottoms: build the frozen bottoms even when the catalogue comes from the cache (encoding new items);
    otherwise a cached run leaves out what never computes (see TextEncoder, ImageEncoder)."""
    cfg = cfg or ModelConfig.from_dict(params["model"], init_seed=params["train"]["seed"], kind=kind)
    model = Recommender(cfg, kind, n_items=data.n_items, image_size=data.image_size,
                        frozen_bottoms=bottoms or not use_cache)
    cache = None
    if kind == "content":
        data.check_tokenizer(cfg.text_encoder.name)
        if use_cache:
            cache = frozen_cache.load(model.items, data, cache_dir(params, data.name), dtype)
    model.attach(item_features(data, cache, device))
    return model.to(device)


def load_trained(params: dict, path: str | Path, platform: str, device="cpu",
                 bottoms: bool = False) -> tuple[Recommender, PlatformData, dict]:
    """(model, platform data, payload): a trained model folder (or a run's folder) on `platform`'s items (its
    own, or another platform's for a content model: zero-shot). The frozen-layer cache is only a speed-up: a
    missing or stale one means the full encoders. A folder that does not fit its model is one line."""
    from transrec import params as P

    payload = ckpt.read(path)
    path = Path(payload["folder"])
    P.platform_config(params, platform)  # an unknown platform -> one line
    data = PlatformData(processed_dir(params, platform), platform)
    kind = payload["kind"]
    if kind == "id" and platform != payload.get("platform"):
        raise TransrecError(f"{path} is an ID model trained on {payload.get('platform')}: it has no vectors for "
                            f"{platform}'s items (zero-shot needs a content model)")
    if kind == "id" and payload.get("catalogue") != ckpt.catalogue_hash(data.proc):
        raise TransrecError(f"{path} is an ID model of another {platform} catalogue (fingerprint "
                            f"{payload.get('catalogue')} vs {ckpt.catalogue_hash(data.proc)} here): its item rows are "
                            "other items; retrain it on this data")
    cfg, tcfg = ModelConfig.from_dict(payload["model_config"]), params["train"]
    try:
        net = build_model(params, data, kind, device, bool(tcfg["cache"]) and kind == "content", tcfg["cache_dtype"],
                          cfg=cfg, bottoms=bottoms)
    except TransrecError:
        net = build_model(params, data, kind, device, False, tcfg["cache_dtype"], cfg=cfg)
    report = ckpt.load_into(net, payload, str(path))
    if report["counts"]["unused"] or any(not r.startswith("frozen encoder bottom") for r in report["not_loaded"].values()):
        raise TransrecError(f"{path} does not fit the model it describes: {ckpt.summarize(report).splitlines()[0]}")
    if payload.get("items_frozen"):
        net.freeze_items()
    net.eval()
    return net, data, payload
