"""Model folders: what a trained model is on disk, how it is read safely, and how its weights are loaded
into a (possibly different) model, with a report.

A run's model is a folder in the layout of Hugging Face's `save_pretrained` (a hub can hold it as it is):

    <run>/model/model.safetensors   the weights (safetensors: raw tensors, nothing executes on load); its
                                    header's metadata repeats what the rest of the folder needs to rebuild
                                    the model ("transrec": the model header), so the weights file alone is
                                    consistent while a run is still writing it
    <run>/model/config.json         the header plus what a reader checks or cites: the encoders' identity and
                                    weight-file hashes, the catalogue fingerprint, the params hash, trainable
                                    parameters, the metrics (written when the run finishes)
    <run>/model/README.md           the model card (transrec.model.card)

Saved weights: every weight except the frozen encoder bottoms, which are a pure function of the pretrained
weights named in the model config (they are rebuilt from there, so a model stays a few MB instead of
carrying the whole BERT and CNN). Not `save_pretrained` itself: a transrec model is only usable with a
platform's items attached, so `from_pretrained`'s "rebuild from config.json alone" does not apply; the
layout and the file formats are the hub's.

Reading never unpickles: `best.pt` files of transrec before the model folder (pickles) are refused with a
hint to `transrec convert-model`, which reads them with torch's weights-only loader.

Loading returns a report: which weights were loaded and, for every one that was not, why:
frozen bottom (from the pretrained weights), item-ID table (platform-specific, never transferred),
missing from the checkpoint, or a shape mismatch; plus checkpoint tensors this model has no use for.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

import polars as pl
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from transrec.atomic import atomic_path, write_json
from transrec.errors import TransrecError, first_line
from transrec.model import lora
from transrec.model.cache import encoder_files
from transrec.model.config import ModelConfig
from transrec.model.recommender import Recommender
from transrec.paths import CATALOG, MODEL_CARD, MODEL_CONFIG, MODEL_DIR, MODEL_WEIGHTS
from transrec.tensor_file import json_default, read_header

FORMAT = "transrec-model"
FORMAT_VERSION = 1
HEADER = "transrec"  # the weights file's metadata key holding the model header
ID_TABLE = "items.table."


def model_state(model: Recommender, merge_adapters: bool = True) -> dict:
    """The weights to save. LoRA adapters (the lora setting) are merged into their layers unless
    merge_adapters is False (the resume state: a resumed run continues the adapters themselves)."""
    frozen = tuple(model.frozen_prefixes())
    state = model.state_dict()
    if merge_adapters:
        state = lora.merged_state(model, state)
    return {k: v.detach().cpu().contiguous().clone() for k, v in state.items() if not k.startswith(frozen)}


def catalogue_hash(proc: Path) -> str:
    """The fingerprint of a platform's items: their keys in item order (an ID model's rows are these items).
    Computed once per version of the catalogue file: every best checkpoint of a run records it."""
    stat = (Path(proc) / CATALOG).stat()
    return _catalogue_hash(str((Path(proc) / CATALOG).resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=64)
def _catalogue_hash(path: str, size: int, mtime_ns: int) -> str:
    keys = pl.read_parquet(path, columns=["item", "key"]).sort("item")["key"].to_list()
    return hashlib.sha256("\n".join(map(str, keys)).encode()).hexdigest()[:16]


def save_weights(folder: str | Path, state: dict, header: dict) -> None:
    """model.safetensors (atomically): the weights and, in its metadata, the model header."""
    header = {"format": FORMAT, "format_version": FORMAT_VERSION, **header}
    with atomic_path(Path(folder) / MODEL_WEIGHTS, ".safetensors") as tmp:
        save_file(state, str(tmp), metadata={"format": "pt", HEADER: json.dumps(header, default=json_default)})


def write_config(folder: str | Path, extra: dict) -> dict:
    """config.json: the weights' header plus `extra` (identity, fingerprints, metrics); returns it."""
    folder = Path(folder)
    config = {**_weights_header(folder / MODEL_WEIGHTS), **extra, "weights": MODEL_WEIGHTS}
    write_json(folder / MODEL_CONFIG, json.loads(json.dumps(config, default=json_default)))
    return config


HUB = "hf:"  # --model hf:owner/name[@revision]: a model folder on the Hugging Face hub


def from_hub(name: str) -> Path:
    """The local snapshot of a hub model (downloaded once into the hub cache; HF_HUB_OFFLINE=1 reads the cache
    only). Only files are fetched: nothing in them runs."""
    from huggingface_hub import snapshot_download

    repo, _, revision = name.partition("@")
    try:
        return Path(snapshot_download(repo, revision=revision or None, repo_type="model"))
    except Exception as exc:  # no network, unknown repo, offline with nothing cached, ...
        first = first_line(exc)
        raise TransrecError(f"{HUB}{name}: cannot get it from the hub ({type(exc).__name__}: {first})") from None


def model_folder(path: str | Path) -> Path:
    """A model folder from what a user names: the folder itself, a run's folder (holding model/), a file
    inside the model folder, or hf:owner/name on the hub. Pickled checkpoints of older transrec versions
    are refused with the fix."""
    if str(path).startswith(HUB):
        return from_hub(str(path)[len(HUB):])
    path = Path(path)
    legacy = path if path.suffix == ".pt" else path / "best.pt" if (path / "best.pt").is_file() else None
    if legacy is not None and not (path.is_dir() and ((path / MODEL_DIR).is_dir() or (path / MODEL_WEIGHTS).is_file())):
        raise TransrecError(f"{legacy} is a pickled checkpoint of an older transrec: not loaded (a pickle can run code); "
                            f"convert it once with `transrec convert-model {legacy} OUT_FOLDER` (weights-only reader)")
    if path.is_file() and path.name in (MODEL_WEIGHTS, MODEL_CONFIG, MODEL_CARD):
        path = path.parent
    if path.is_dir() and (path / MODEL_DIR).is_dir():
        path = path / MODEL_DIR
    if not path.exists():
        raise TransrecError(f"{path} not found")
    if not path.is_dir():
        raise TransrecError(f"{path} is not a model folder (a folder with {MODEL_WEIGHTS} and {MODEL_CONFIG})")
    return path


def _weights_header(path: Path) -> dict:
    if not path.is_file():
        raise TransrecError(f"{path.parent}: {path.name} is missing (not a complete transrec model folder)")
    raw = read_header(path).get(HEADER)
    if raw is None:
        raise TransrecError(f"{path}: no transrec header in its metadata (not a transrec model's weights)")
    try:
        return json.loads(raw)
    except ValueError:
        raise TransrecError(f"{path}: its transrec header is not valid JSON") from None


def _check_format(doc: dict, where: Path) -> None:
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise TransrecError(f"{where} is not a transrec model (format {doc.get('format') if isinstance(doc, dict) else '?'!r}, "
                            f"expected {FORMAT!r})")
    version = doc.get("format_version")
    if version != FORMAT_VERSION:
        raise TransrecError(f"{where}: format_version {version!r}; this transrec reads format_version {FORMAT_VERSION}"
                            + (" (written by a newer transrec: upgrade)" if isinstance(version, int)
                               and version > FORMAT_VERSION else ""))


def read(path: str | Path, finished: bool = True) -> dict:
    """The payload of a model folder: its config (or, finished=False, the weights' header alone: a run that
    is still training has no config.json yet) plus "state", the weights. Every way a folder can be wrong
    (missing file, unreadable JSON, unknown format version, truncated weights, config and weights from
    different saves) is one line; nothing in the folder is executed."""
    folder = model_folder(path)
    header = _weights_header(folder / MODEL_WEIGHTS)
    _check_format(header, folder / MODEL_WEIGHTS)
    config = header
    if finished:
        config_path = folder / MODEL_CONFIG
        if not config_path.is_file():
            raise TransrecError(f"{folder}: {MODEL_CONFIG} is missing (not a finished transrec model folder)")
        try:
            config = json.loads(config_path.read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise TransrecError(f"{config_path} is not valid JSON ({exc})") from None
        _check_format(config, config_path)
        if any(config.get(k) != header.get(k) for k in ("kind", "step", "platform", "setting")):
            raise TransrecError(f"{folder}: {MODEL_CONFIG} (step {config.get('step')}) and {MODEL_WEIGHTS} (step "
                                f"{header.get('step')}) come from different saves (an interrupted copy?)")
    try:
        state = load_file(str(folder / MODEL_WEIGHTS), device="cpu")
    except (SafetensorError, OSError, ValueError) as exc:
        raise TransrecError(f"{folder / MODEL_WEIGHTS} cannot be read (truncated or corrupt?): {exc}") from None
    return {**config, "state": state, "folder": str(folder)}


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
        saved = (payload.get("encoders") or {}).get("weight_files")  # a finished model folder records them
        local = encoder_files(model.cfg.text_encoder, model.cfg.image_encoder)
        if saved is not None and saved != local:
            which = ", ".join(k for k in local if local[k] != saved.get(k))
            raise TransrecError(f"{source}: trained with other {which} encoder weights than the local ones (weight-file "
                                f"hashes {saved} vs {local}): its item vectors would be wrong here")
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
