"""Platform adapters by name. Each module exposes URL (documented download), LAYOUT (file-name
defaults a user may override in params `layout`) and read(root, layout) -> RawPlatform."""
from __future__ import annotations

import importlib
from pathlib import Path

from transrec.platforms.base import RawPlatform

ADAPTER_MODULES = {
    "synthetic": "transrec.platforms.csv_layout",  # the generator writes the csv layout
    "csv": "transrec.platforms.csv_layout",
    "movielens": "transrec.platforms.movielens",
    "hm": "transrec.platforms.hm",
    "ninerec": "transrec.platforms.ninerec",
    "microlens": "transrec.platforms.microlens",
    "pixelrec": "transrec.platforms.pixelrec",
    "morec": "transrec.platforms.morec",
}


def adapter_module(adapter: str):
    return importlib.import_module(ADAPTER_MODULES[adapter])


def read_platform(adapter: str, root: Path, layout: dict | None) -> RawPlatform:
    if adapter == "synthetic":
        layout = {"modality_col": "modality"}  # the generator declares each item's shown modality
    return adapter_module(adapter).read(root, layout)
