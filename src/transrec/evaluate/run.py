"""`transrec evaluate PLATFORM SETTING` -> {paths.results}/metrics/<platform>/<setting>.json

SETTING: pretrain (the source model on the source), scratch | finetune | frozen | zero_shot | id
(the run's best.pt on the target), or popularity (train-interaction counts, no model).
Leave-one-out test (context: train + validation item) and validation (context: train), full
ranking over every non-dropped item, history masked (evaluate.mask_history), ties pessimistic.
"""
from __future__ import annotations

import time

from transrec import params as P
from transrec.atomic import write_json
from transrec.errors import TransrecError
from transrec.evaluate.ranking import model_scorer, popularity_scorer, rank_split
from transrec.model import checkpoint as ckpt
from transrec.model.config import ModelConfig
from transrec.train.data import PlatformData
from transrec.train.loop import build_model, pick_device, set_threads
from transrec.train.settings import EVAL_SETTINGS, metrics_path, run_dir
from transrec.train.tracking import Tracker


def evaluate(params: dict, platform: str, setting: str, progress: bool = True) -> dict:
    if setting not in EVAL_SETTINGS:
        raise TransrecError(f"unknown setting '{setting}'; expected one of {', '.join(EVAL_SETTINGS)}")
    start = time.time()
    tcfg, ecfg = params["train"], params["evaluate"]
    device = pick_device(tcfg["device"], 0)
    if device.type == "cpu":
        set_threads(tcfg["num_threads"])
    _, proc = P.platform_dirs(params, platform)
    P.platform_config(params, platform)
    data = PlatformData(proc, platform)
    ks = list(ecfg["ks"])
    info: dict = {}
    if setting == "popularity":
        scorer, max_len = popularity_scorer(data, device), params["model"]["user_encoder"]["max_len"]
    else:
        path = run_dir(params, platform, setting) / "best.pt"
        if not path.is_file():
            how = "transrec pretrain" if setting == "pretrain" else f"transrec transfer {platform} {setting}"
            raise TransrecError(f"{path} not found: run `{how}` first")
        payload = ckpt.read(path)
        cfg = ModelConfig.from_dict(payload["model_config"])
        model = build_model(params, data, payload["kind"], device, bool(tcfg["cache"]) and payload["kind"] == "content",
                            tcfg["cache_dtype"], cfg=cfg)
        report = ckpt.load_into(model, payload, str(path))
        if report["counts"]["unused"] or any(not r.startswith("frozen encoder bottom") for r in report["not_loaded"].values()):
            raise TransrecError(f"{path} does not fit the model it describes: {ckpt.summarize(report).splitlines()[0]}")
        if payload.get("items_frozen"):
            model.freeze_items()
        scorer, max_len = model_scorer(model, device), cfg.user_encoder.max_len
        info = {"checkpoint": str(path), "epoch": payload.get("epoch"), "kind": payload["kind"]}
    valid = rank_split(data, "valid", scorer, ks, ecfg["mask_history"], ecfg["chunk_users"], max_len, device, progress)
    test = rank_split(data, "test", scorer, ks, ecfg["mask_history"], ecfg["chunk_users"], max_len, device, progress)
    doc = {"platform": platform, "setting": setting, "test": test["metrics"], "valid": valid["metrics"],
           "counts": {"users": test["users"], "items_ranked": test["items_ranked"], "items": data.n_items,
                      "dropped_items": int(data.n_items - len(data.pool)),
                      "masked_history_items_test": test["masked_history_items"],
                      "masked_history_items_valid": valid["masked_history_items"]},
           "protocol": {"split": "leave-one-out", "ranking": "full catalogue", "ties": "pessimistic",
                        "mask_history": ecfg["mask_history"], "ks": ks, "max_len": max_len},
           **info, "wall_s": round(time.time() - start, 2)}
    tracker = Tracker(params, "evaluate", f"{platform}/{setting}/evaluate", [platform, setting],
                      {"platform": platform, "setting": setting, "evaluate": ecfg, **info})
    tracker.summary({**{f"test/{k}": v for k, v in test["metrics"].items()},
                     **{f"valid/{k}": v for k, v in valid["metrics"].items()}, "users": test["users"]})
    tracker.finish()
    doc["wandb_run_dir"] = tracker.run_dir
    write_json(metrics_path(params, platform, setting), doc)
    return doc
