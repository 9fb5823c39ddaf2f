"""A platform's model: built from params, its catalogue attached (through the frozen-layer cache when
train.cache is on). Training, evaluation and recommendation all build it here."""
from __future__ import annotations

from transrec.dataset import PlatformData
from transrec.model.config import ModelConfig
from transrec.model.recommender import Recommender
from transrec.paths import cache_dir
from transrec.train import cache as frozen_cache


def build_model(params: dict, data: PlatformData, kind: str, device, use_cache: bool, dtype: str,
                cfg: ModelConfig | None = None) -> Recommender:
    cfg = cfg or ModelConfig.from_dict(params["model"], init_seed=params["train"]["seed"], kind=kind)
    model = Recommender(cfg, kind, n_items=data.n_items, image_size=data.image_size)
    cache = None
    if kind == "content":
        data.check_tokenizer(cfg.text_encoder.name)
        if use_cache:
            cache = frozen_cache.load(model.items, data, cache_dir(params, data.name), dtype)
    model.attach(data.features(cache, device))
    return model.to(device)
