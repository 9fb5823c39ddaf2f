"""The metrics JSON of one run, {paths.results}/metrics/<platform>/<run>.json: what DVC shows as
metrics and the report reads. Written by the training commands at the end of a run (the best
checkpoint, evaluated in the same process) and by `transrec evaluate` (popularity, re-evaluation);
both build it here, so the two are the same document.
"""
from __future__ import annotations

import time

from transrec.dataset import PlatformData


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
            **info, "wall_s": round(time.time() - start, 2)}

