"""A nested state (dicts, lists, numbers, strings, tensors) in one safetensors file; nothing executes on load.

Checkpoints used to be pickles (`torch.save`), and unpickling runs whatever the file names: a model
folder someone sends, or pulls from a DVC remote, could run code on `transrec recommend`. Here the
tensors go into a safetensors file (a JSON header and raw buffers) and the rest of the tree into its
header's metadata as JSON, with every tensor replaced by a reference {"$tensor": name}:

    save_tree(path, {"model": {"w": t}, "step": 3})  ->  tensors {"model/w": t}, metadata {"tree": ...}

JSON has no integer keys and no tuples: a dict whose keys are not all strings (an optimizer's state is
keyed by parameter number) is stored as {"$items": [[key, value], ...]}, and tuples come back as lists
(every reader here accepts either). One file, written atomically: a run killed while saving keeps the
previous state whole.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from transrec.atomic import atomic_path
from transrec.errors import TransrecError

TREE = "tree"  # the metadata key that holds the JSON tree


def _split(obj, name: str, tensors: dict):
    if isinstance(obj, torch.Tensor):
        tensors[name] = obj.detach().cpu().contiguous().clone()  # safetensors refuses shared or strided storage
        return {"$tensor": name}
    if isinstance(obj, dict):
        if all(isinstance(k, str) for k in obj):
            return {k: _split(v, f"{name}/{k}", tensors) for k, v in obj.items()}
        return {"$items": [[k, _split(v, f"{name}/{k}", tensors)] for k, v in obj.items()]}
    if isinstance(obj, list | tuple):
        return [_split(v, f"{name}/{i}", tensors) for i, v in enumerate(obj)]
    if obj is None or isinstance(obj, bool | int | float | str):
        return obj
    raise TypeError(f"{name}: {type(obj).__name__} cannot be stored in a tensor file")


def _join(obj, tensors: dict):
    if isinstance(obj, dict):
        if set(obj) == {"$tensor"}:
            return tensors[obj["$tensor"]]
        if set(obj) == {"$items"}:
            return {k: _join(v, tensors) for k, v in obj["$items"]}
        return {k: _join(v, tensors) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_join(v, tensors) for v in obj]
    return obj


def save_tree(path: str | Path, tree: dict, metadata: dict[str, str] | None = None) -> None:
    """Write `tree` to `path` (atomically); `metadata` adds string entries to the header (e.g. "format")."""
    tensors: dict[str, torch.Tensor] = {}
    skeleton = _split(tree, "", tensors)
    with atomic_path(path, ".safetensors") as tmp:
        save_file({k.lstrip("/"): v for k, v in tensors.items()}, str(tmp),
                  metadata={**(metadata or {}), TREE: json.dumps(skeleton, separators=(",", ":"), default=json_default)})


def json_default(obj):
    """numpy and torch scalars (a metric computed with numpy) are plain numbers in JSON."""
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def read_header(path: str | Path) -> dict[str, str]:
    """The metadata of a safetensors file, without reading its tensors; a file that is not one -> one line."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = int.from_bytes(fh.read(8), "little")
            if not 0 < size <= min(path.stat().st_size - 8, 100_000_000):
                raise ValueError(f"header length {size} does not fit the file ({path.stat().st_size} bytes)")
            header = json.loads(fh.read(size))
        return dict(header.get("__metadata__") or {})
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise TransrecError(f"{path} is not a readable safetensors file ({exc})") from None


def load_tree(path: str | Path) -> tuple[dict, dict[str, str]]:
    """(tree, header metadata) of a file written by save_tree; a truncated or foreign file -> one line."""
    path = Path(path)
    if not path.is_file():
        raise TransrecError(f"{path} not found")
    metadata = read_header(path)
    try:
        tensors = {"/" + k: v for k, v in load_file(str(path), device="cpu").items()}
    except (SafetensorError, OSError, ValueError) as exc:
        raise TransrecError(f"{path} cannot be read (truncated or corrupt?): {exc}") from None
    if TREE not in metadata:
        raise TransrecError(f"{path} is a safetensors file without a transrec state (no '{TREE}' in its header)")
    try:
        tree = _join(json.loads(metadata.pop(TREE)), tensors)
    except (ValueError, KeyError, TypeError) as exc:
        raise TransrecError(f"{path}: its state cannot be read ({type(exc).__name__}: {exc})") from None
    return tree, metadata
