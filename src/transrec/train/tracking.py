"""Weights & Biases for every run: config, per-epoch losses and validation metrics, final test metrics (and
their cold-item split: test_seen<bucket>/<metric>).

Mode from params (`wandb.mode`: offline | online | disabled), overridden by the WANDB_MODE
environment variable. Offline runs land in {paths.results}/wandb/wandb/offline-run-*/ and can be
uploaded later with `wandb sync`. group = the experiment (`wandb.group`), job_type = pretrain |
transfer | evaluate | report, tags = platform, setting and variant. Training runs log a table of sample
recommendations (with item images); the report run logs the results, gains and scaling tables
(wandb.Table), the plots, and each gain with its interval as summary (gain/<platform>/<over>-<base>/...).

`read_offline_run` reads an offline run's .wandb file back (config, history, summary) without the
network; the tests use it.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import string
import struct
import threading
from pathlib import Path

from transrec.errors import TransrecError, first_line

MODES = ("offline", "online", "disabled")


def new_run_id() -> str:
    """A W&B run id (8 of [a-z0-9], wandb's own format), made here so the run can start in the background."""
    return "".join(secrets.choice(string.ascii_lowercase + string.digits) for _ in range(8))


class Tracker:
    """One W&B run. Offline (the default), `wandb.init` (importing wandb and starting its service, ~1.5 s)
    runs in a background thread while the job loads data and trains; the first call that needs the run
    waits for it. Online it starts before the job goes on, so missing credentials stop a run before any
    work."""

    def __init__(self, params: dict, job_type: str, name: str, tags: list[str], config: dict,
                 run_id: str | None = None, enabled: bool = True):
        section = params.get("wandb", {})
        self.mode = os.environ.get("WANDB_MODE") or section.get("mode", "offline")
        if self.mode not in MODES:
            raise TransrecError(f"W&B mode '{self.mode}' (from WANDB_MODE or wandb.mode): expected one of {', '.join(MODES)}")
        self._run = self._error = self._thread = self._dir = None
        self.run_id: str | None = None
        if not enabled or self.mode == "disabled":
            return
        self.run_id = run_id or new_run_id()
        root = Path(params["paths"]["results"]) / "wandb"
        root.mkdir(parents=True, exist_ok=True)
        kwargs = dict(project=section.get("project", "transrec"), entity=section.get("entity") or None,
                      group=section.get("group", "default"), job_type=job_type, name=name, tags=tags, config=config,
                      dir=str(root), mode=self.mode, id=self.run_id, resume="allow" if run_id else None,
                      reinit="finish_previous")
        if self.mode == "offline":
            self._thread = threading.Thread(target=self._start, kwargs=kwargs, daemon=True, name="wandb-init")
            self._thread.start()
        else:
            self._start(**kwargs)
            self._wait()

    def _start(self, **kwargs) -> None:
        try:
            import wandb

            self._run = wandb.init(**kwargs, settings=wandb.Settings(console="off", x_disable_stats=True, silent=True,
                                                                     disable_git=True, x_save_requirements=False))
        except Exception as exc:  # no network/credentials for online mode, a broken install, ...
            self._error = first_line(exc)

    def _wait(self):
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._error is not None:
            error, self._error = self._error, None
            raise TransrecError(f"W&B ({self.mode}) could not start: {error}; set wandb.mode: offline or "
                                "WANDB_MODE=offline")
        return self._run

    @property
    def run(self):
        """The wandb run (None when tracking is off), once it has started."""
        return self._wait()

    @property
    def run_dir(self) -> str | None:
        """The run's folder (kept after finish: the metrics document names it)."""
        if self._dir is None and self.run is not None:
            self._dir = str(Path(self._run.dir).parent)
        return self._dir

    def log(self, values: dict, step: int | None = None) -> None:
        if self.run is not None:
            self.run.log(values, step=step)

    def table(self, key: str, rows: list[dict], images: dict[int, object] | None = None) -> None:
        """Log rows (dicts with the same keys) as a wandb.Table; `images` maps a row number to an image
        (HxWx3 uint8 array or a PNG path) shown in an extra `image` column."""
        if self.run is None or not rows:
            return
        import wandb

        columns = list(rows[0])
        data = [[row.get(c) for c in columns] for row in rows]
        if images is not None:
            columns.append("image")
            for i, row in enumerate(data):
                row.append(wandb.Image(images[i]) if i in images else None)
        self.run.log({key: wandb.Table(columns=columns, data=data)})

    def images(self, values: dict[str, object]) -> None:
        """Log images (arrays or PNG paths) under their keys."""
        if self.run is not None and values:
            import wandb

            self.run.log({key: wandb.Image(str(v) if isinstance(v, Path) else v) for key, v in values.items()})

    def artifact(self, name: str, folder: Path, kind: str, metadata: dict) -> None:
        """Log a folder (a model folder) as a versioned artifact; offline it waits in the run for `wandb sync`."""
        if self.run is not None:
            import wandb

            artifact = wandb.Artifact(re.sub(r"[^\w.-]", "-", name), type=kind, metadata=metadata)
            artifact.add_dir(str(folder))
            self.run.log_artifact(artifact)

    def summary(self, values: dict) -> None:
        if self.run is not None:
            for key, value in values.items():
                self.run.summary[key] = value

    def finish(self) -> None:
        if self.run is not None:
            _ = self.run_dir  # remembered: the folder outlives the run
            self._run.finish()
            self._run = None


def _records(path: Path):
    """Protobuf records of a .wandb file (LevelDB-style log: 7-byte header, 32 KiB blocks)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    if data[:4] != b":W&B":
        raise TransrecError(f"{path} is not a W&B run file")
    pos, block, pending = 7, 32768, b""
    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            pos += left - 7  # zero padding to the end of the block
            continue
        chunk, pos = data[pos:pos + length], pos + length
        if kind == 1:  # full
            payload = chunk
        elif kind == 2:  # first
            pending = chunk
            continue
        elif kind == 3:  # middle
            pending += chunk
            continue
        else:  # last
            payload, pending = pending + chunk, b""
        record = pb.Record()
        record.ParseFromString(payload)
        yield record


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_offline_run(run_dir: str | Path) -> dict:
    """{'name', 'config', 'history' (list of dicts), 'summary', 'group', 'job_type', 'tags', 'artifacts'} of an
    offline run dir."""
    run_dir = Path(run_dir)
    files = sorted(run_dir.glob("run-*.wandb"))
    if not files:
        raise TransrecError(f"no run-*.wandb file in {run_dir}")
    out = {"name": None, "config": {}, "history": [], "summary": {}, "group": None, "job_type": None, "tags": [],
           "artifacts": []}
    for record in _records(files[0]):
        kind = record.WhichOneof("record_type")
        if kind == "run":
            run = record.run
            out.update(name=run.display_name, group=run.run_group, job_type=run.job_type, tags=list(run.tags))
            for item in run.config.update:
                out["config"][_key(item)] = json.loads(item.value_json)
        elif kind == "config":
            for item in record.config.update:
                out["config"][_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({_key(i): json.loads(i.value_json) for i in record.history.item})
        elif kind == "artifact":
            art = record.artifact
            out["artifacts"].append({"name": art.name, "type": art.type, "metadata": json.loads(art.metadata or "{}"),
                                     "files": sorted(e.path for e in art.manifest.contents)})
        elif kind == "summary":
            for item in record.summary.update:
                out["summary"][_key(item)] = json.loads(item.value_json)
    return out
