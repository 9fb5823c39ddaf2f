"""`transrec evaluate PLATFORM RUN` -> {paths.results}/metrics/<platform>/<RUN>.json

RUN: popularity (train-interaction counts, no model), or a trained run, SETTING[@VARIANT] with SETTING
pretrain | scratch | finetune | lora | frozen | zero_shot | id: its model folder evaluated again (the training
commands write the same file when they finish; this re-evaluates, e.g. after changing `evaluate`).
Leave-one-out test (context: train + validation item) and validation (context: train), full
ranking over every non-dropped item, history masked (evaluate.mask_history), ties pessimistic.
"""
from __future__ import annotations

import time

from transrec import params as P
from transrec.data.platform import PlatformData
from transrec.errors import TransrecError
from transrec.evaluate.document import metrics_document, write_run
from transrec.evaluate.per_user import cold_summary
from transrec.evaluate.ranking import model_scorer, popularity_scorer, rank_split
from transrec.model.build import load_trained
from transrec.paths import MODEL_CONFIG, model_dir, processed_dir
from transrec.runtime import local_device
from transrec.train.tracking import Tracker
from transrec.transfer_settings import evaluated
from transrec.variants import split_run


def evaluate(params: dict, platform: str, run: str, progress: bool = True) -> dict:
    setting, point = split_run(run)
    if setting not in evaluated():
        raise TransrecError(f"unknown setting '{setting}'; expected one of {', '.join(evaluated())}")
    if setting == "popularity" and point.name:
        raise TransrecError(f"'{run}': popularity has no variants")
    start = time.time()
    tcfg, ecfg = params["train"], params["evaluate"]
    device = local_device(tcfg)
    ks = sorted(set(ecfg["ks"]) | {10})
    info: dict = {}
    if setting == "popularity":
        P.platform_config(params, platform)
        data = PlatformData(processed_dir(params, platform), platform)
        scorer, max_len = popularity_scorer(data, device), params["model"]["user_encoder"]["max_len"]
    else:
        path = model_dir(params, platform, run)
        if not (path / MODEL_CONFIG).is_file():
            how = (f"transrec pretrain{' --variant ' + point.name if point.name else ''}" if setting == "pretrain"
                   else f"transrec transfer {platform} {run}")
            raise TransrecError(f"{path} not found: run `{how}` first")
        model, data, payload = load_trained(params, path, platform, device)
        scorer, max_len = model_scorer(model, device), model.cfg.user_encoder.max_len
        info = {"checkpoint": str(path), "epoch": payload.get("epoch"), "kind": payload["kind"],
                "training": payload.get("training")}  # why its training stopped (transrec.train.loop.stop_record)
    valid = rank_split(data, "valid", scorer, ks, ecfg["mask_history"], ecfg["chunk_users"], max_len, device, progress)
    test = rank_split(data, "test", scorer, ks, ecfg["mask_history"], ecfg["chunk_users"], max_len, device, progress)
    doc = metrics_document(data, platform, run, valid, test, ecfg, ks, max_len, start, **info)
    tracker = Tracker(params, "evaluate", f"{platform}/{run}", [platform, setting, *filter(None, [point.name])],
                      {"platform": platform, "setting": setting, "run": run, "variant": point.name or "main",
                       "evaluate": ecfg, **info})
    tracker.summary({**{f"test/{k}": v for k, v in test["metrics"].items()},
                     **{f"valid/{k}": v for k, v in valid["metrics"].items()}, "users": test["users"],
                     **cold_summary(doc["cold_items"])})
    tracker.finish()
    doc["wandb_run_dir"] = tracker.run_dir
    write_run(params, doc)
    return doc
