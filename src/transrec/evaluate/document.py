"""The documents of one evaluated run, built and written here by the training commands at the end of a run
(the best checkpoint, evaluated in the same process) and by `transrec evaluate` (popularity,
re-evaluation), so the two are the same:
    {paths.results}/metrics/<platform>/<run>.json   test and valid metrics and wall time: numbers only, what
                                                    DVC shows as metrics (`dvc metrics show` reads as a table)
    {paths.results}/run_info/<platform>/<run>.json  everything else: counts, protocol, checkpoint, W&B folder,
                                                    the test metrics by the test item's training count
                                                    (cold_items) and every test user's rank (test_ranks,
                                                    last: one long line), transrec.evaluate.per_user
"""
from __future__ import annotations

import json
import time

from transrec.atomic import write_json
from transrec.data.platform import PlatformData
from transrec.evaluate.per_user import cold_items, ranks_record, train_counts
from transrec.paths import metrics_file, run_info_file

METRIC_KEYS = ("test", "valid", "wall_s")


def metrics_document(data: PlatformData, platform: str, run: str, valid: dict, test: dict, ecfg: dict, ks: list[int],
                     max_len: int, start: float, **info) -> dict:
    return {"platform": platform, "setting": run.partition("@")[0], "run": run,
            "test": test["metrics"], "valid": valid["metrics"],
            "counts": {"users": test["users"], "items_ranked": test["items_ranked"], "items": data.n_items,
                       "dropped_items": int(data.n_items - len(data.pool)),
                       "masked_history_items_test": test["masked_history_items"],
                       "masked_history_items_valid": valid["masked_history_items"]},
            "protocol": {"split": "leave-one-out", "ranking": "full catalogue", "ties": "pessimistic",
                         "mask_history": ecfg["mask_history"], "ks": ks, "max_len": max_len},
            "cold_items": cold_items(train_counts(data), data.test, test["ranks"], ks),
            **info, "wall_s": round(time.time() - start, 2), "test_ranks": ranks_record(data.test, test["ranks"])}


def write_run(params: dict, doc: dict) -> None:
    """Split a run's document into its metrics file and its run-info file (info first: a metrics file
    present means the run is complete)."""
    platform, run = doc["platform"], doc["run"]
    write_json(run_info_file(params, platform, run), {k: v for k, v in doc.items() if k not in METRIC_KEYS[:2]})
    write_json(metrics_file(params, platform, run), {k: doc[k] for k in METRIC_KEYS})


def read_run(params: dict, platform: str, run: str) -> dict:
    """The whole document again (metrics + run info)."""
    return {**json.loads(run_info_file(params, platform, run).read_text()),
            **json.loads(metrics_file(params, platform, run).read_text())}

