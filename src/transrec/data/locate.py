"""download/locate: make a platform's raw files available and record where they are.

synthetic: generate the platform (csv layout) under data/raw/<platform>/files.
real adapters: use location.path when it exists; else download location.url (checksum, resume) and
unpack it; else stop with one line saying what to download and where to put it.
The manifest (data/raw/<platform>/manifest.json) is what the clean step reads.
"""
from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

from transrec.atomic import write_json
from transrec.data.fetch import download, unpack
from transrec.errors import TransrecError
from transrec.platforms import adapter_module
from transrec.platforms import synthetic
from transrec.paths import MANIFEST


def _descend(folder: Path) -> Path:
    """Archives often wrap their files in one folder (ml-100k.zip -> ml-100k/): step into it."""
    while True:
        entries = [p for p in folder.iterdir() if not p.name.startswith(".")]
        if len(entries) == 1 and entries[0].is_dir():
            folder = entries[0]
        else:
            return folder


def _fingerprint(root: Path) -> dict:
    """Names, sizes and mtimes of the top-level files: a change to the source shows in the manifest."""
    files = {}
    for p in sorted(root.iterdir()):
        if p.is_file():
            st = p.stat()
            files[p.name] = {"bytes": st.st_size, "mtime": int(st.st_mtime)}
        elif p.is_dir():
            files[p.name + "/"] = {"entries": sum(1 for _ in p.iterdir())}
    return files


def locate(cfg: dict, raw_dir: Path, world_cfg: dict) -> dict:
    name, adapter = cfg["name"], cfg["adapter"]
    if adapter == "synthetic":
        root = raw_dir / "files"
        counts = synthetic.generate(root, world_cfg, cfg["synthetic"], key_prefix=f"{name}-")
        manifest = {"platform": name, "adapter": adapter, "root": str(root.resolve()), "generated": counts}
    else:
        location = cfg.get("location") or {}
        path, url = location.get("path"), location.get("url")
        if path and Path(path).expanduser().is_dir():
            root = Path(path).expanduser().resolve()
        elif url:
            archive = raw_dir / (Path(urlparse(url).path).name or "download")
            download(url, archive, location.get("sha256"))
            root = _descend(unpack(archive, raw_dir / "files")).resolve()
        else:
            module = adapter_module(adapter)
            published, manual = getattr(module, "URL", None), getattr(module, "MANUAL_DOWNLOAD", None)
            if manual:  # no direct archive link (Kaggle login, Google Drive, a page of single files)
                raise TransrecError(f"platform {name}: data folder {path} not found; {manual}")
            where = f"download {published} and unpack it there" if published else "export your data there"
            raise TransrecError(f"platform {name}: data folder {path} not found; {where} "
                                f"(or set platforms.{name}.location.url to let transrec download it)")
        manifest = {"platform": name, "adapter": adapter, "root": str(root), "files": _fingerprint(root)}
    write_json(raw_dir / MANIFEST, manifest)
    return manifest


def check_sources(params: dict) -> None:
    """Before a workflow starts: every platform still to be located has its data folder or a URL, so a
    missing folder of one of many platforms stops the run before any step (or training) starts."""
    from transrec import params as P
    from transrec.paths import raw_dir

    for name in params["platforms"]:
        cfg = P.platform_config(params, name)
        if cfg["adapter"] == "synthetic" or (raw_dir(params, name) / MANIFEST).is_file():
            continue
        location = cfg.get("location") or {}
        path, url = location.get("path"), location.get("url")
        if not url and not (path and Path(path).expanduser().is_dir()):
            raise TransrecError(f"platforms.{name}.location.path: data folder {path} not found and no "
                                "location.url to download it from; nothing was run")
