"""Collect every metrics JSON of a study into tables: per target x setting, transfer gains, scaling.

Metrics files live at {paths.results}/metrics/<platform>/<setting>[@<variant>].json (transrec.variants:
`src0.3` pre-trained on 30% of the source users, `tgt0.1` 10% of the target users, `seed1` another
replicate). Replicates of one point are aggregated as mean and standard deviation. Beside each metrics file,
the run's run-info file gives its per-user test ranks (the gains' paired bootstrap intervals,
transrec.report.intervals) and its cold-item split; a run evaluated before they were kept has neither,
and its gains get no interval.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from transrec.errors import TransrecError
from transrec.evaluate.metrics import per_user
from transrec.evaluate.per_user import SEEN_BUCKETS, read_ranks
from transrec.paths import run_info_file
from transrec.report.intervals import paired_bootstrap, within_noise
from transrec.transfer_settings import REGISTRY, from_source
from transrec.variants import split_run

HEADLINE = ("hr@10", "ndcg@10")
BASELINES = ("scratch", "id", "popularity")  # what the transfer gain of finetune is measured against


@dataclass
class Cell:
    """One (platform, setting, src, tgt) point: metric values over its seeds."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    files: list[str] = field(default_factory=list)
    ranks: list = field(default_factory=list)  # per seed: its test_ranks record (run info), or None
    cold: list = field(default_factory=list)  # per seed: its cold_items (run info), or None
    training: list = field(default_factory=list)  # per seed: why its training stopped (run info), or None

    def add(self, metrics: dict, path: Path, info: dict) -> None:
        for key, value in metrics.items():
            self.values[key].append(float(value))
        self.files.append(str(path))
        self.ranks.append(info.get("test_ranks"))
        self.cold.append(info.get("cold_items"))
        self.training.append(info.get("training"))

    @property
    def not_converged(self) -> int:
        """Runs of this point that ended at their budget still improving (transrec.train.loop.stop_record)."""
        return sum(bool(t and t.get("still_improving")) for t in self.training)

    def mean(self, key: str) -> float:
        vals = self.values[key]
        return sum(vals) / len(vals)

    def std(self, key: str) -> float:
        vals = self.values[key]
        if len(vals) < 2:
            return 0.0
        m = self.mean(key)
        return math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1))

    @property
    def n(self) -> int:
        return len(self.files)


def _run_info(metrics_dir: Path, platform: str, run: str) -> dict:
    """The run-info file beside a metrics file ({} when there is none: a folder from before it existed)."""
    path = run_info_file({"paths": {"results": str(metrics_dir.parent)}}, platform, run)
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TransrecError(f"{path}: not valid JSON ({exc.msg}); rerun its evaluate step") from None
    buckets = {name for name, _, _ in SEEN_BUCKETS}
    if not isinstance(info.get("test_ranks", {}), dict) or not (
            isinstance(info.get("cold_items", {}), dict) and set(info.get("cold_items", buckets)) == buckets):
        raise TransrecError(f"{path}: test_ranks or cold_items is not what the evaluation writes; rerun its evaluate step")
    return info


def collect(metrics_dir: Path) -> dict[tuple, Cell]:
    """(platform, setting, src, tgt) -> Cell, from every metrics JSON below metrics_dir (and its run info)."""
    if not metrics_dir.is_dir():
        raise TransrecError(f"{metrics_dir} not found: run the evaluate steps first")
    cells: dict[tuple, Cell] = defaultdict(Cell)
    for path in sorted(metrics_dir.glob("*/*.json")):
        setting, point = split_run(path.stem)
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TransrecError(f"{path}: not valid JSON ({exc.msg}); rerun its evaluate step") from None
        cells[(path.parent.name, setting, point.src, point.tgt)].add(doc["test"], path,
                                                                     _run_info(metrics_dir, path.parent.name, path.stem))
    if not cells:
        raise TransrecError(f"no metrics files in {metrics_dir}: run the evaluate steps first")
    return dict(cells)


def _setting_rank(setting: str) -> int:
    """The registry's order (baselines, transfer settings, source model); unknown names last."""
    order = list(REGISTRY)
    return order.index(setting) if setting in order else len(order)


def main_table(cells: dict[tuple, Cell], metrics: list[str]) -> list[dict]:
    """Rows of the main point (all data), one per platform x setting, mean (and std over seeds)."""
    rows = []
    for (platform, setting, src, tgt), cell in sorted(cells.items(), key=lambda kv: (kv[0][0], _setting_rank(kv[0][1]))):
        if src != 1.0 or tgt != 1.0:
            continue
        row = {"platform": platform, "setting": setting, "seeds": cell.n, "not_converged": cell.not_converged}
        lacking = [m for m in metrics if len(cell.values.get(m, [])) != cell.n]
        if lacking:
            raise TransrecError(f"{cell.files[0]} has no {lacking[0]} (evaluate.ks asks for it): it was evaluated with "
                                "other evaluate.ks; rerun its evaluate step")
        for m in metrics:
            row[m] = cell.mean(m)
            row[f"{m}_std"] = cell.std(m)
        rows.append({**row, **cold_columns(cell)})
    return rows


def cold_columns(cell: Cell) -> dict:
    """users_seen<b> and <metric>_seen<b> (mean over seeds) per bucket of how often the test item occurs in
    training; None where a run has no cold-item split (evaluated before it was kept) or the bucket is empty."""
    out = {}
    known = None not in cell.cold
    for name, _, _ in SEEN_BUCKETS:
        buckets = [c[name] for c in cell.cold] if known else []
        out[f"users_seen{name}"] = buckets[0]["users"] if buckets else None
        for m in HEADLINE:
            values = [b[m] for b in buckets if m in b]
            out[f"{m}_seen{name}"] = sum(values) / len(values) if values and len(values) == len(buckets) else None
    return out


def _paired_values(platform: str, cells: list[Cell], metrics) -> np.ndarray | None:
    """[seeds, users, metrics] per-user values of the cells' runs (all of one platform), or None when a run
    has no ranks; a run whose test users differ from the others' is refused in one line."""
    records = [(f, r) for cell in cells for f, r in zip(cell.files, cell.ranks)]
    if any(r is None for _, r in records):
        return None
    first_file, first = records[0]
    for file, record in records[1:]:
        if (record.get("users"), record.get("targets_sha256")) != (first.get("users"), first.get("targets_sha256")):
            what = (f"{record.get('users')} test users against {first.get('users')}"
                    if record.get("users") != first.get("users") else "other test items than")
            raise TransrecError(f"{platform}: {file} ranks {what} in {first_file}: evaluated on different splits, they "
                                "cannot be paired; rerun the older run's evaluate step")
    ranks = [read_ranks(r, f) for f, r in records]
    return np.stack([np.stack([per_user(r, m) for m in metrics], axis=1) for r in ranks])


def gains(cells: dict[tuple, Cell], metrics=HEADLINE, over: str = "finetune", bases=BASELINES) -> list[dict]:
    """Gain of `over` against each baseline per platform, at the main point and at every share of target
    users both were trained on (the baseline's main point for popularity, which has no variants): the
    means over seeds, absolute and relative gain, and its 95% paired bootstrap interval
    (transrec.report.intervals; None when a run has no per-user ranks) with within_noise where it covers 0."""
    out = []
    for (platform, setting, src, tgt), top in cells.items():
        if setting != over or src != 1.0:
            continue
        for base in bases:
            bottom = cells.get((platform, base, 1.0, tgt))
            if bottom is None:
                continue
            row = {"platform": platform, "target_share": tgt, "over": over, "base": base, "seeds_over": top.n,
                   "seeds_base": bottom.n}
            values = _paired_values(platform, [top, bottom], metrics)
            interval = None if values is None else paired_bootstrap(values[:top.n], values[top.n:])
            for i, m in enumerate(metrics):
                b, o = bottom.mean(m), top.mean(m)
                low, high = (float(interval[1][i]), float(interval[2][i])) if interval else (None, None)
                row.update({f"{m}_base": b, f"{m}_over": o, f"{m}_gain": o - b,
                            f"{m}_gain_rel": (o - b) / b if b > 0 else float("nan"), f"{m}_low": low, f"{m}_high": high,
                            f"{m}_within_noise": within_noise(low, high) if interval else None})
            out.append(row)
    return sorted(out, key=lambda r: (r["platform"], r["target_share"] != 1.0, bases.index(r["base"]), r["target_share"]))


def scaling(cells: dict[tuple, Cell], axis: str, metric: str = "ndcg@10") -> list[dict]:
    """Points of a scaling curve: axis 'src' (other fraction 1.0) or 'tgt' (src 1.0)."""
    other = "tgt" if axis == "src" else "src"
    rows = []
    for (platform, setting, src, tgt), cell in cells.items():
        point = {"src": src, "tgt": tgt}
        if point[other] != 1.0 or setting in ("pretrain",):
            continue
        rows.append({"platform": platform, "setting": setting, "fraction": point[axis], "seeds": cell.n,
                     metric: cell.mean(metric), f"{metric}_std": cell.std(metric), "not_converged": cell.not_converged})
    # A curve needs at least two fractions of the same (platform, setting).
    fractions = defaultdict(set)
    for r in rows:
        fractions[(r["platform"], r["setting"])].add(r["fraction"])
    rows = [r for r in rows if len(fractions[(r["platform"], r["setting"])]) > 1]
    if axis == "src":  # source size only changes models that use the source
        rows = [r for r in rows if r["setting"] in from_source()]
    return sorted(rows, key=lambda r: (r["platform"], _setting_rank(r["setting"]), r["fraction"]))
