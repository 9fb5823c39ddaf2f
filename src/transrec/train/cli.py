"""The learning half's commands: `transrec cache | pretrain | transfer | evaluate`.

    transrec cache PLATFORM            -> {paths.data}/cache/PLATFORM/{text.npy,image.npy,cache.json} (heads tower)
                                        or {layers_text.npy,layers_image.npy,cache.json} (side tower)
    transrec pretrain [--variant V]  -> {paths.results}/models/<source>/pretrain[@V]/{model/,resume.safetensors,train_log.json}
                                        + {paths.results}/metrics/<source>/pretrain[@V].json
    transrec transfer TARGET RUN     -> {paths.results}/models/TARGET/RUN/{model/,resume.safetensors,train_log.json}
                                        + {paths.results}/metrics/TARGET/RUN.json
    transrec evaluate PLATFORM RUN   -> {paths.results}/metrics/PLATFORM/RUN.json
RUN is SETTING[@VARIANT], e.g. finetune, finetune@src0.3, scratch@tgt0.1-seed1 (transrec.variants).
"""
from __future__ import annotations

import argparse


def _cache(args) -> None:
    import torch

    from transrec import params as P
    from transrec.data.platform import PlatformData
    from transrec.model import cache
    from transrec.model.config import ModelConfig
    from transrec.model.recommender import item_tower
    from transrec.paths import cache_dir, processed_dir
    from transrec.runtime import local_device
    from transrec.train.settings import require_learning

    params = require_learning(P.load(args.params))
    P.platform_config(params, args.platform)
    data = PlatformData(processed_dir(params, args.platform), args.platform)
    cfg = ModelConfig.from_dict(params["model"], init_seed=params["train"]["seed"])
    data.check_tokenizer(cfg.text_encoder.name)
    device = local_device(params["train"])
    torch.manual_seed(cfg.init_seed)
    tower = item_tower(cfg, data.image_size or 64).to(device)
    if tower.image.load_report.get("weights"):
        r = tower.image.load_report
        print(f"image encoder {cfg.image_encoder.name}: {r.get('tensors', '?')} tensors from {r['weights']} "
              f"(missing {len(r.get('missing', []))}, unexpected {len(r.get('unexpected', []))})")
    out = cache_dir(params, args.platform)
    meta = cache.build(tower, data, out, params["train"]["cache_dtype"], device=device)
    if cfg.item_tower == "side":
        print(f"{args.platform}: layer states text {meta['text']['shape']} ({meta['text']['bytes_per_item']} B/item), "
              f"images {meta['image']['shape']} ({meta['image']['bytes_per_item']} B/row), {meta['bytes'] / 1e6:.1f} MB "
              f"in {meta['wall_s']} s -> {out}")
        return
    print(f"{args.platform}: cached text {meta['text']['shape']} (frozen {meta['fingerprint']['text']['frozen_depth']}"
          f" of {meta['fingerprint']['text']['layers']} layers), images {meta['image']['shape']} (frozen "
          f"{meta['fingerprint']['image']['frozen_depth']} blocks), {meta['bytes'] / 1e6:.1f} MB in "
          f"{meta['wall_s']} s -> {out}")


def _pretrain(args) -> None:
    from transrec import params as P
    from transrec.train.loop import run
    from transrec.train.settings import pretrain_spec, require_learning

    params = require_learning(P.load(args.params))
    run(params, pretrain_spec(params, args.variant), restart=args.restart)


def _transfer(args) -> None:
    from transrec import params as P
    from transrec.train.loop import run
    from transrec.train.settings import require_learning, transfer_spec

    params = require_learning(P.load(args.params))
    run(params, transfer_spec(params, args.target, args.run), restart=args.restart)


def _evaluate(args) -> None:
    from transrec import params as P
    from transrec.paths import metrics_file
    from transrec.train.evaluation import evaluate
    from transrec.train.settings import require_learning

    params = require_learning(P.load(args.params))
    doc = evaluate(params, args.platform, args.run)
    t = doc["test"]
    print(f"{args.platform}/{args.run}: test hr@10 {t['hr@10']:.4f} ndcg@10 {t['ndcg@10']:.4f} mrr {t['mrr']:.4f} "
          f"({doc['counts']['users']} users, {doc['counts']['items_ranked']} items) -> "
          f"{metrics_file(params, args.platform, args.run)}")


def add_commands(sub, common: argparse.ArgumentParser) -> None:
    from transrec.transfer_settings import evaluated, transfer_settings

    p = sub.add_parser("cache", parents=[common], help="the frozen encoders' outputs, once per platform: the frozen-layer "
                       "cache (heads tower) or every layer's pooled state (side tower)")
    p.add_argument("platform", help="platform name from params.yaml")
    p.set_defaults(func=_cache)
    p = sub.add_parser("pretrain", parents=[common], help="pre-train on the platform with role: source")
    p.add_argument("--variant", default="", help="a study point: src<f> pre-trains on that share of the users")
    p.add_argument("--restart", action="store_true", help="ignore the resume file and train from the start")
    p.set_defaults(func=_pretrain)
    p = sub.add_parser("transfer", parents=[common], help="train/transfer to a target in one setting")
    p.add_argument("target", help="target platform name from params.yaml")
    p.add_argument("run", metavar="RUN", help=f"SETTING[@VARIANT]; SETTING: {' | '.join(transfer_settings())}; "
                   "VARIANT: src<f>, tgt<f>, seed<n> joined by '-' (e.g. finetune@tgt0.1-seed1)")
    p.add_argument("--restart", action="store_true", help="ignore the resume file and train from the start")
    p.set_defaults(func=_transfer)
    p = sub.add_parser("evaluate", parents=[common], help="full-ranking test metrics of one run (or popularity)")
    p.add_argument("platform", help="platform name from params.yaml")
    p.add_argument("run", metavar="RUN", help=f"SETTING[@VARIANT]; SETTING: {' | '.join(evaluated())}")
    p.set_defaults(func=_evaluate)
