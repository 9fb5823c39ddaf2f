"""Atomic writes: every output is written to a temp file beside it, then renamed.

An interrupted step therefore never leaves a half-written file under the final name, and
Snakemake/DVC see either the old output or the complete new one.
"""
from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# mkstemp creates its file 0600; an output should get the mode a plain open() would give it
# (readable by the group on a shared cluster), so the temp file is chmod-ed before the rename.
_FILE_MODE = 0o666 & ~_umask()


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_json(path: str | os.PathLike, obj) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_parquet(path: str | os.PathLike, frame) -> None:
    with atomic_path(path, ".parquet") as tmp:
        frame.write_parquet(tmp)


def write_npy(path: str | os.PathLike, array: np.ndarray) -> None:
    with atomic_path(path, ".npy") as tmp:
        np.save(tmp, array)


@contextmanager
def atomic_memmap(path: str | os.PathLike, shape: tuple, dtype) -> Iterator[np.memmap]:
    """An .npy memmap filled in place (large image stores never sit in RAM), renamed when complete."""
    with atomic_path(path, ".npy") as tmp:
        array = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        yield array
        array.flush()
        del array
