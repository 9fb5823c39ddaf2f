"""Model checkpoints: what is saved, how a checkpoint is loaded into a (possibly different) model, and the report.

Saved: every weight except the frozen encoder bottoms, which are a pure function of the pretrained
weights named in the model config (they are rebuilt from there, so a checkpoint stays a few MB
instead of carrying the whole BERT and CNN).

Loading returns a report: which weights were loaded and, for every one that was not, why:
frozen bottom (from the pretrained weights), item-ID table (platform-specific, never transferred),
missing from the checkpoint, or a shape mismatch; plus checkpoint tensors this model has no use for.
"""
from __future__ import annotations

from pathlib import Path

import torch

from transrec.atomic import atomic_path
from transrec.errors import TransrecError
from transrec.model import lora
from transrec.model.config import ModelConfig
from transrec.model.recommender import Recommender

FORMAT = 1
ID_TABLE = "items.table."


def model_state(model: Recommender, merge_adapters: bool = True) -> dict:
    """The weights to save. LoRA adapters (the lora setting) are merged into their layers unless
    merge_adapters is False (last.pt: a resumed run continues the adapters themselves)."""
    frozen = tuple(model.frozen_prefixes())
    state = model.state_dict()
    if merge_adapters:
        state = lora.merged_state(model, state)
    return {k: v.detach().cpu().clone() for k, v in state.items() if not k.startswith(frozen)}


def save(path: str | Path, payload: dict) -> None:
    with atomic_path(path, ".pt") as tmp:
        torch.save(payload, tmp)


def read(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise TransrecError(f"checkpoint {path} not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # a truncated or foreign file
        raise TransrecError(f"checkpoint {path} cannot be read: {type(exc).__name__}: {exc}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT or "state" not in payload:
        raise TransrecError(f"{path} is not a transrec checkpoint (format {FORMAT})")
    return payload


def encoder_identity(cfg: ModelConfig) -> dict:
    """What must agree between a checkpoint and the model it is loaded into (the frozen bottoms)."""
    t, i = cfg.text_encoder, cfg.image_encoder
    identity = {"text": [t.name, t.pretrained, t.trainable_blocks], "image": [i.name, i.pretrained, i.trainable_blocks]}
    if cfg.item_tower != "heads":  # a side tower's weights read its layer states: the same states, the same tower
        identity["tower"] = [cfg.item_tower, t.pooling, cfg.side.layers]
    return identity


def load_into(model: Recommender, payload: dict, source: str = "checkpoint", transfer: bool = False) -> dict:
    """Load a checkpoint's weights into `model` wherever names and shapes agree; return the report.

    transfer=True: the checkpoint comes from another platform (the source), so an item-ID table is
    never taken over, whatever its shape. transfer=False: the model's own checkpoint (evaluation).
    """
    if model.kind == "content" and payload.get("kind") == "content":
        ckpt_cfg = ModelConfig.from_dict(payload["model_config"])
        if encoder_identity(ckpt_cfg) != encoder_identity(model.cfg):
            raise TransrecError(f"{source}: its encoders {encoder_identity(ckpt_cfg)} differ from this model's "
                                f"{encoder_identity(model.cfg)}; re-run pre-training with the current params")
    state = payload["state"]
    own = model.state_dict()
    frozen = tuple(model.frozen_prefixes())
    loaded, not_loaded, take = [], {}, {}
    for key, value in own.items():
        if key.startswith(frozen):
            not_loaded[key] = "frozen encoder bottom: kept from the pretrained weights (never stored in checkpoints)"
        elif key.startswith(ID_TABLE) and transfer:
            not_loaded[key] = "item-ID table: items are platform-specific, never transferred (kept at initialisation)"
        elif key not in state:
            not_loaded[key] = "not in the checkpoint: kept at initialisation"
        elif tuple(state[key].shape) != tuple(value.shape):
            not_loaded[key] = (f"shape {tuple(state[key].shape)} in the checkpoint vs {tuple(value.shape)} here: "
                               "kept at initialisation")
        else:
            take[key] = state[key]
            loaded.append(key)
    unused = {k: ("item-ID table of another platform" if k.startswith(ID_TABLE) and transfer else "not in this model")
              for k in state if k not in own or (k in not_loaded and k not in take)}
    model.load_state_dict(take, strict=False)
    model._item_table = None
    return {"source": source, "loaded": loaded, "not_loaded": not_loaded, "unused": unused,
            "counts": {"loaded": len(loaded), "not_loaded": len(not_loaded), "unused": len(unused),
                       "loaded_parameters": int(sum(v.numel() for v in take.values()))}}


def summarize(report: dict) -> str:
    """A few lines for the console: counts, then the not-loaded weights grouped by reason."""
    c = report["counts"]
    lines = [f"loaded {c['loaded']} tensors ({c['loaded_parameters']:,} values) from {report['source']}; "
             f"not loaded {c['not_loaded']}; unused in the checkpoint {c['unused']}"]
    by_reason: dict[str, list[str]] = {}
    for key, reason in {**report["not_loaded"], **{k: f"unused: {r}" for k, r in report["unused"].items()}}.items():
        by_reason.setdefault(reason, []).append(key)
    for reason, keys in by_reason.items():
        prefixes = sorted({".".join(k.split(".")[:3]) for k in keys})
        shown = ", ".join(prefixes[:4]) + (f", ... ({len(prefixes)} groups)" if len(prefixes) > 4 else "")
        lines.append(f"  not loaded ({len(keys)}): {reason}: {shown}")
    return "\n".join(lines)
