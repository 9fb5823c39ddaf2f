"""Collect every metrics JSON of a study into tables: per target x setting, transfer gains, scaling.

Metrics files live at {paths.results}/metrics/<platform>/<setting>[@<variant>].json (transrec.variants:
`src0.3` pre-trained on 30% of the source users, `tgt0.1` 10% of the target users, `seed1` another
replicate). Replicates of one point are aggregated as mean and standard deviation.
"""
from __future__ import annotations

import json
import math
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from transrec.errors import TransrecError
from transrec.transfer_settings import REGISTRY, from_source
from transrec.variants import split_run

HEADLINE = ("hr@10", "ndcg@10")


@dataclass
class Cell:
    """One (platform, setting, src, tgt) point: metric values over its seeds."""

    values: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    files: list[str] = field(default_factory=list)

    def add(self, metrics: dict, path: Path) -> None:
        for key, value in metrics.items():
            self.values[key].append(float(value))
        self.files.append(str(path))

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


def collect(metrics_dir: Path) -> dict[tuple, Cell]:
    """(platform, setting, src, tgt) -> Cell, from every metrics JSON below metrics_dir."""
    if not metrics_dir.is_dir():
        raise TransrecError(f"{metrics_dir} not found: run the evaluate steps first")
    cells: dict[tuple, Cell] = defaultdict(Cell)
    for path in sorted(metrics_dir.glob("*/*.json")):
        setting, point = split_run(path.stem)
        try:
            doc = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise TransrecError(f"{path}: not valid JSON ({exc.msg}); rerun its evaluate step") from None
        cells[(path.parent.name, setting, point.src, point.tgt)].add(doc["test"], path)
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
        row = {"platform": platform, "setting": setting, "seeds": cell.n}
        lacking = [m for m in metrics if len(cell.values.get(m, [])) != cell.n]
        if lacking:
            raise TransrecError(f"{cell.files[0]} has no {lacking[0]} (evaluate.ks asks for it): it was evaluated with "
                                "other evaluate.ks; rerun its evaluate step")
        for m in metrics:
            row[m] = cell.mean(m)
            row[f"{m}_std"] = cell.std(m)
        rows.append(row)
    return rows


def gains(rows: list[dict], metrics=HEADLINE, base: str = "scratch", over: str = "finetune") -> list[dict]:
    """Transfer gain of `over` against `base` per platform: absolute and relative."""
    by = {(r["platform"], r["setting"]): r for r in rows}
    out = []
    for platform in sorted({r["platform"] for r in rows}):
        if (platform, base) not in by or (platform, over) not in by:
            continue
        row = {"platform": platform}
        for m in metrics:
            b, o = by[(platform, base)][m], by[(platform, over)][m]
            row[f"{m}_{base}"], row[f"{m}_{over}"] = b, o
            row[f"{m}_gain"] = o - b
            row[f"{m}_gain_rel"] = (o - b) / b if b > 0 else float("nan")
        out.append(row)
    return out


def scaling(cells: dict[tuple, Cell], axis: str, metric: str = "ndcg@10") -> list[dict]:
    """Points of a scaling curve: axis 'src' (other fraction 1.0) or 'tgt' (src 1.0)."""
    other = "tgt" if axis == "src" else "src"
    rows = []
    for (platform, setting, src, tgt), cell in cells.items():
        point = {"src": src, "tgt": tgt}
        if point[other] != 1.0 or setting in ("pretrain",):
            continue
        rows.append({"platform": platform, "setting": setting, "fraction": point[axis], "seeds": cell.n,
                     metric: cell.mean(metric), f"{metric}_std": cell.std(metric)})
    # A curve needs at least two fractions of the same (platform, setting).
    fractions = defaultdict(set)
    for r in rows:
        fractions[(r["platform"], r["setting"])].add(r["fraction"])
    rows = [r for r in rows if len(fractions[(r["platform"], r["setting"])]) > 1]
    if axis == "src":  # source size only changes models that use the source
        rows = [r for r in rows if r["setting"] in from_source()]
    return sorted(rows, key=lambda r: (r["platform"], _setting_rank(r["setting"]), r["fraction"]))
