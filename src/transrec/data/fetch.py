"""Download a platform archive: resumable (HTTP Range on a .part file), checksummed, then unpacked.

Only runs when params give a URL. Without network it fails with one line that says which file to
place where, so a user behind a firewall can download by hand.
"""
from __future__ import annotations

import hashlib
import shutil
import tarfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from tqdm import tqdm

from transrec.errors import TransrecError

CHUNK = 1 << 20


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str | None, timeout: float = 30.0) -> Path:
    """Fetch url to dest (resuming a previous .part), verify sha256 when given; return dest."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_file() and (sha256 is None or sha256_of(dest) == sha256):
        return dest
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            resumed = have > 0 and getattr(response, "status", 200) == 206
            if not resumed:
                have = 0
            total = response.headers.get("Content-Length")
            total = int(total) + have if total is not None else None
            with part.open("ab" if resumed else "wb") as fh, tqdm(
                    total=total, initial=have, unit="B", unit_scale=True, desc=f"download {dest.name}") as bar:
                for block in iter(lambda: response.read(CHUNK), b""):
                    fh.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as exc:
        if not (exc.code == 416 and have > 0):
            raise TransrecError(f"cannot download {url} (HTTP {exc.code} {exc.reason}); without network, download it "
                                f"by hand and place it at {dest}") from None
        # 416 on a resume: the .part already holds every byte (Content-Range: bytes */<size>), or it is stale
        size = (exc.headers.get("Content-Range") or "").rpartition("/")[2]
        if size.isdigit() and int(size) != have:
            part.unlink()
            raise TransrecError(f"the partial download {part} does not match {url} (server size {size} bytes, "
                                f"partial {have}); it was removed, run again to re-download") from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        raise TransrecError(f"cannot download {url} ({reason}); without network, download it by hand and "
                            f"place it at {dest}") from None
    if sha256 is not None:
        got = sha256_of(part)
        if got != sha256:
            part.unlink()
            raise TransrecError(f"checksum mismatch for {url}: expected sha256 {sha256}, got {got}; "
                                f"the partial file was removed, run again to re-download")
    part.replace(dest)
    return dest


def unpack(archive: Path, into: Path) -> Path:
    """Unpack a zip/tar archive into `into` (skipped when already unpacked); return `into`."""
    done = into / ".unpacked"
    st = archive.stat()
    stamp = f"{archive.name} {st.st_size} {st.st_mtime_ns}"  # a re-downloaded archive is unpacked again
    if done.is_file() and done.read_text() == stamp:
        return into
    tmp = into.with_name(into.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(tmp)
        elif tarfile.is_tarfile(archive):
            with tarfile.open(archive) as tf:
                tf.extractall(tmp, filter="data")
        else:
            raise TransrecError(f"{archive}: not a zip or tar archive")
    except (zipfile.BadZipFile, tarfile.TarError, EOFError) as exc:
        raise TransrecError(f"{archive}: corrupt archive ({exc}); delete it and run again") from None
    shutil.rmtree(into, ignore_errors=True)
    tmp.replace(into)
    (into / ".unpacked").write_text(stamp)
    return into
