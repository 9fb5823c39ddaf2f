"""Atomic writes: every output is written to a temp file beside it, then renamed.

An interrupted step therefore never leaves a half-written file under the final name, and
Snakemake/DVC see either the old output or the complete new one. A write that runs out of space
(ENOSPC, a quota) removes its temp file and ends in one line naming the file.
"""
from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from transrec.errors import TransrecError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# The temp file is created 0600; an output should get the mode a plain open() would give it
# (readable by the group on a shared cluster), so the temp file is chmod-ed before the rename.
_FILE_MODE = 0o666 & ~_umask()


def _out_of_space(exc: BaseException) -> bool:
    """ENOSPC/EDQUOT, also where a library wraps it (polars raises ComputeError with the OS message)."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(exc) for text in (os.strerror(errno.ENOSPC), os.strerror(errno.EDQUOT)))


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temp path in the target's folder; rename it over `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # One fixed temp name per output (an output has one writer): a temp file left by a killed writer is
    # replaced by the next write of the same output, with no scan of the folder (a folder of 50k images
    # made a glob per write quadratic).
    tmp = path.parent / f".{path.name}.partial.tmp{suffix}"
    tmp.unlink(missing_ok=True)
    os.close(os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o600))
    try:
        yield tmp
        if tmp.exists():
            os.chmod(tmp, _FILE_MODE)
        os.replace(tmp, path)
    except Exception as exc:
        if not _out_of_space(exc):
            raise
        free = shutil.disk_usage(path.parent).free
        raise TransrecError(f"{path}: no space left on the device ({free / 1e6:.1f} MB free in {path.parent}); "
                            "nothing was written under this name") from None
    finally:
        if tmp.exists():
            tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


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
        with open(tmp, "r+b") as fh:  # reserve the blocks now: a full disk is then an error, not a SIGBUS
            os.posix_fallocate(fh.fileno(), 0, os.path.getsize(tmp))
        yield array
        array.flush()
        del array
