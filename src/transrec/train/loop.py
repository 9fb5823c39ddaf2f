"""The training loop, nanoGPT style: one function, one model, plain loop over steps.

- Budget and early stopping in steps: validation NDCG@10 (full ranking) every train.eval_every steps
  (0 = at the end of every epoch), patience counted in evaluations, at most train.epochs epochs and
  train.max_steps steps (0 = no step limit); best.pt holds the best evaluation's weights. The learning
  rate warms up linearly over train.warmup_steps, then stays (constant) or decays to 0 over the budget
  (cosine).
- last.pt at every evaluation: model, optimizer, the position (epoch, step within it, global step),
  torch RNG states, early-stop state, the log so far and the W&B run id. A killed run restarts from it
  (batches are a function of (seed, epoch, step), so the resumed run draws what the uninterrupted one
  would) and ends with the same result. A last.pt from a different configuration is ignored (the run starts over). When the run
  completes, last.pt shrinks to a marker (fingerprint + state): rerunning a complete run does nothing.
- torchrun: with WORLD_SIZE > 1 the process group is initialised (nccl on GPU, gloo on CPU), each
  rank takes its slice of every global batch, the model is DDP-wrapped, and only rank 0 evaluates,
  logs and writes checkpoints.
- Device: cuda if available (bf16 autocast), else CPU with train.num_threads threads.
- The end of a run evaluates the best checkpoint on valid and test and writes the run's metrics JSON
  ({paths.results}/metrics/<platform>/<run>.json, the same document as `transrec evaluate`), in this
  process: a separate evaluation process per run cost a third of the default study's wall time.
- A variant (transrec.variants) trains on a share of the users (a seeded, nested subset: the 10% are
  among the 30%) and/or with train.seed + n; validation and test always cover every user.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from transrec import params as P
from transrec.atomic import write_json
from transrec.errors import TransrecError
from transrec.evaluate.document import metrics_document
from transrec.evaluate.ranking import model_scorer, rank_split
from transrec.model import checkpoint as ckpt
from transrec.model.config import ModelConfig
from transrec.model.recommender import Recommender
from transrec.train import cache as frozen_cache
from transrec.train.data import Batches, PlatformData, epoch_batches
from transrec.train.settings import RunSpec, metrics_path
from transrec.train.tracking import Tracker

MONITOR = "ndcg@10"


# ---- environment -----------------------------------------------------------------------------------
def distributed(timeout_min: float = 60) -> tuple[int, int, int]:
    """(rank, world size, local rank); initialises the process group under torchrun.

    The timeout covers rank 0's validation pass, during which the other ranks wait at a collective:
    the default (10 min for NCCL) kills a job that evaluates a large catalogue."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, 0
    from datetime import timedelta

    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if torch.cuda.is_available() else "gloo",
                                timeout=timedelta(minutes=timeout_min))
    return dist.get_rank(), world, int(os.environ.get("LOCAL_RANK", "0"))


def pick_device(setting: str, local_rank: int) -> torch.device:
    if setting == "cuda" and not torch.cuda.is_available():
        raise TransrecError("train.device is cuda but no CUDA device is available")
    if setting in ("auto", "cuda") and torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        return torch.device("cuda", local_rank)
    return torch.device("cpu")


def set_threads(n: int, world: int = 1) -> int:
    """n > 0: n threads; 0: OMP_NUM_THREADS when set (Snakemake sets it to the rule's threads), else the
    cores available to this process (at most 8), shared among the ranks of a CPU torchrun."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    env = os.environ.get("OMP_NUM_THREADS", "")
    n = n or (int(env) if env.isdigit() and int(env) > 0 else max(1, min(8, cores // max(1, world))))
    torch.set_num_threads(n)
    return n


def train_settings(params: dict, setting: str) -> dict:
    """The `train` section, with the overrides of `train.pretrain` (the pre-training run) or `train.id`
    (the SASRec-ID runs) applied."""
    section = dict(params["train"])
    overrides = {"pretrain": section.pop("pretrain", {}) or {}, "id": section.pop("id", {}) or {}}
    section.update(overrides.get(setting, {}))
    return section


# ---- building ---------------------------------------------------------------------------------------
def build_model(params: dict, data: PlatformData, kind: str, device, use_cache: bool, dtype: str,
                cfg: ModelConfig | None = None) -> Recommender:
    cfg = cfg or ModelConfig.from_dict(params["model"], init_seed=params["train"]["seed"], kind=kind)
    model = Recommender(cfg, kind, n_items=data.n_items, image_size=data.image_size)
    cache = None
    if kind == "content":
        data.check_tokenizer(cfg.text_encoder.name)
        if use_cache:
            cache = frozen_cache.load(model.items, data, frozen_cache.cache_dir(params, data.name), dtype)
    model.attach(data.features(cache, device))
    return model.to(device)


def _hash_json(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to(batch: dict, device) -> dict:
    return {k: v.to(device, non_blocking=True) for k, v in batch.items()}


def lr_scale(step: int, warmup: int, total: int, schedule: str) -> float:
    """Multiplier of the base learning rates at global step `step` (0-based) of a `total`-step budget:
    linear warm-up, then constant or a cosine decay to 0 (a function of the step: resume-safe)."""
    warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
    if schedule == "cosine" and total > warmup:
        progress = min(1.0, max(0.0, (step - warmup) / (total - warmup)))
        return warm * 0.5 * (1.0 + math.cos(math.pi * progress))
    return warm


# ---- the run ------------------------------------------------------------------------------------------
def run(params: dict, spec: RunSpec, restart: bool = False, progress: bool = True) -> dict:
    tcfg, ecfg = train_settings(params, spec.setting), params["evaluate"]
    rank, world, local_rank = distributed(tcfg.get("dist_timeout_min", 60))
    master = rank == 0
    device = pick_device(tcfg["device"], local_rank)
    threads = set_threads(tcfg["num_threads"], world) if device.type == "cpu" else None
    seed = tcfg["seed"] + spec.variant.seed
    out = Path(spec.out_dir)
    start_time = time.time()

    _, proc = P.platform_dirs(params, spec.platform)
    data = PlatformData(proc, spec.platform)
    use_cache = bool(tcfg["cache"]) and spec.kind == "content"
    model = build_model(params, data, spec.kind, device, use_cache, tcfg["cache_dtype"])
    load_report = None
    if spec.init_from is not None:
        payload = ckpt.read(spec.init_from)
        load_report = ckpt.load_into(model, payload, str(spec.init_from), transfer=True)
        if master:
            print(f"{spec.platform}/{spec.name}: " + ckpt.summarize(load_report))
    if spec.freeze_items:
        model.freeze_items()
    mcfg = model.cfg
    image_weights = model.items.image.load_report if spec.kind == "content" else None  # missing/unexpected keys
    ks = sorted(set(ecfg["ks"]) | {10})
    evaluate = lambda split: rank_split(  # noqa: E731
        data, split, model_scorer(model, device), ks, ecfg["mask_history"], ecfg["chunk_users"],
        mcfg.user_encoder.max_len, device, progress)

    fingerprint = _hash_json({"model": mcfg.to_dict(), "train": {k: v for k, v in tcfg.items()
                                                                  if k not in ("num_threads", "device", "loader_workers")},
                              "spec": [spec.platform, spec.name, spec.kind, spec.freeze_items, spec.train],
                              "init": frozen_cache.file_hash(spec.init_from) if spec.init_from else None,
                              "split": frozen_cache.file_hash(proc / "split.parquet"), "world": world})
    last_path, best_path, log_path = out / "last.pt", out / "best.pt", out / "train_log.json"
    # position: epochs done, steps done within the current epoch, steps done in all; early-stop state
    state = {"epoch": 0, "epoch_step": 0, "step": 0, "best": float("-inf"), "best_step": 0, "best_epoch": 0,
             "bad": 0, "log": [], "wandb_id": None, "complete": False}
    optimizer = None
    if spec.train:
        optimizer = torch.optim.AdamW(model.param_groups(tcfg["lr"], tcfg["encoder_lr"], tcfg["weight_decay"]),
                                      betas=(0.9, 0.999))
    torch.manual_seed(seed)
    resumed = False
    if last_path.is_file() and not restart and spec.train:
        last = torch.load(last_path, map_location="cpu", weights_only=False)
        if last.get("fingerprint") != fingerprint:
            if master:
                print(f"{last_path}: from a different configuration; starting over")
        elif (last["state"]["complete"] and best_path.is_file() and log_path.is_file()
              and metrics_path(params, spec.platform, spec.name).is_file()):
            if master:
                print(f"{spec.platform}/{spec.name}: already complete ({log_path}); --restart to train again")
            return json.loads(log_path.read_text())
        elif not last["state"]["complete"]:
            model.load_state_dict(last["model"], strict=False)
            optimizer.load_state_dict(last["optimizer"])
            _set_rng_state(last["rng"])
            state = last["state"]
            resumed = True
            if master:
                print(f"{spec.platform}/{spec.name}: resuming from {last_path} at step {state['step']} "
                      f"(epoch {state['epoch'] + 1})")

    if spec.train and not resumed:
        best_path.unlink(missing_ok=True)  # never evaluate a best.pt left by another configuration
    tracker = Tracker(params, spec.job_type, f"{spec.platform}/{spec.name}", [spec.platform, spec.setting, *spec.tags],
                      {"platform": spec.platform, "setting": spec.setting, "run": spec.name, "kind": spec.kind,
                       "user_fraction": spec.user_fraction, "replicate": spec.variant.seed, "seed": seed,
                       "init_from": str(spec.init_from) if spec.init_from else None, "model": mcfg.to_dict(),
                       "train": tcfg, "evaluate": ecfg, "world_size": world, "device": str(device),
                       "threads": threads, "cache": use_cache,
                       "loaded_tensors": load_report["counts"] if load_report else None},
                      run_id=state["wandb_id"], enabled=master)
    state["wandb_id"] = tracker.run_id

    def payload(step: int, epoch: int, valid: dict | None) -> dict:
        return {"format": ckpt.FORMAT, "kind": spec.kind, "model_config": mcfg.to_dict(),
                "n_items": data.n_items if spec.kind == "id" else None, "image_size": data.image_size,
                "items_frozen": model.items_frozen, "state": ckpt.model_state(model), "platform": spec.platform,
                "setting": spec.setting, "step": step, "epoch": epoch, "valid": valid}

    def write_log(complete: bool, extra: dict | None = None) -> dict:
        doc = {"platform": spec.platform, "setting": spec.setting, "run": spec.name, "kind": spec.kind,
               "complete": complete, "user_fraction": spec.user_fraction, "seed": seed,
               "trained_users": int(len(batches.eligible)) if batches else 0,
               "init_from": str(spec.init_from) if spec.init_from else None, "device": str(device),
               "threads": threads, "world_size": world, "cache": use_cache, "resumed": resumed,
               "evaluations": state["log"], "steps": state["step"], "best_step": state["best_step"],
               "best_epoch": state["best_epoch"],
               "best_valid_" + MONITOR: None if state["best"] == float("-inf") else state["best"],
               "load_report": load_report, "image_weights": image_weights, "wandb_run_dir": tracker.run_dir,
               **(extra or {})}
        write_json(log_path, doc)
        return doc

    epochs = tcfg["epochs"] if spec.train else 0
    ddp_model = model
    if tcfg.get("compile") and spec.train:
        # the user encoder sees fixed [B, N, d] inputs (only the last batch is shorter): compile it alone;
        # the item towers see a different number of distinct items every step
        model.user.compile(dynamic=True)  # in place: the state_dict keys (checkpoints) stay the same
    if world > 1 and spec.train:
        from torch.nn.parallel import DistributedDataParallel

        # A content model's step may hold no text (or no image) item at all, leaving that tower without
        # gradients: DDP must then look for unused parameters. An ID model uses all of its parameters.
        ddp_model = DistributedDataParallel(model, device_ids=[local_rank] if device.type == "cuda" else None,
                                            find_unused_parameters=spec.kind == "content")
    autocast = (torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext())
    batches = Batches(data, mcfg, tcfg["batch_size"], seed, spec.user_fraction, tcfg["samples"]) if spec.train else None
    base_lrs = [group["lr"] for group in optimizer.param_groups] if optimizer else []
    # The budget: epochs (their step counts vary a little with the windows' random offsets) and max_steps.
    plan = [batches.steps_per_epoch(e) for e in range(epochs)] if spec.train else []
    total = min(sum(plan), tcfg["max_steps"] or sum(plan))
    eval_every = tcfg["eval_every"]  # 0: at the end of every epoch

    def validate(losses: list[float], t0: float) -> bool:
        """Evaluate, keep the best weights, checkpoint the position; True when patience has run out."""
        loss = float(np.mean(losses)) if losses else float("nan")
        if world > 1:  # the logged loss is the mean over ranks, not rank 0's share
            import torch.distributed as dist

            total_loss = torch.tensor([loss], dtype=torch.float64, device=device)
            dist.all_reduce(total_loss)
            loss = float(total_loss.item()) / world
        stop = False
        if master:
            train_s = time.time() - t0
            valid = evaluate("valid")
            score = valid["metrics"][MONITOR]
            step, epoch = state["step"], state["epoch"] + (state["epoch_step"] > 0)
            if score > state["best"]:
                state.update(best=score, best_step=step, best_epoch=epoch, bad=0)
                ckpt.save(best_path, payload(step, epoch, valid["metrics"]))
            else:
                state["bad"] += 1
            stop = state["bad"] >= tcfg["patience"]
            entry = {"step": step, "epoch": round(state["epoch"] + state["epoch_step"] / max(1, plan[min(
                state["epoch"], len(plan) - 1)]), 3), "loss": loss, "steps": len(losses), "valid": valid["metrics"],
                "train_s": round(train_s, 2), "wall_s": round(time.time() - t0, 2)}
            state["log"].append(entry)
            state["complete"] = stop or step >= total
            tracker.log({"epoch": entry["epoch"], "train/loss": loss, "train/seconds": train_s,
                         **{f"valid/{k}": v for k, v in valid["metrics"].items()}}, step=step)
            tqdm.write(f"{spec.platform}/{spec.name} step {step} (epoch {entry['epoch']:g}): loss {loss:.4f}  valid "
                       f"{MONITOR} {score:.4f}  hr@10 {valid['metrics']['hr@10']:.4f}  ({entry['wall_s']:.1f} s)"
                       + ("  best" if state["best_step"] == step else ""))
            ckpt.save(last_path, {"format": ckpt.FORMAT, "fingerprint": fingerprint, "model": ckpt.model_state(model),
                                  "optimizer": optimizer.state_dict(), "rng": _rng_state(), "state": state})
            write_log(False)
        if world > 1:
            import torch.distributed as dist

            flag = torch.tensor([int(stop)], device=device)
            dist.broadcast(flag, 0)
            stop = bool(flag.item())
        return stop

    bar = tqdm(total=total, initial=state["step"], unit="step", desc=f"{spec.platform}/{spec.name}",
               disable=not (master and progress and total))
    stop = False
    while spec.train and not stop and state["epoch"] < epochs and state["step"] < total:
        model.train()
        losses, t0 = [], time.time()
        stream = epoch_batches(batches, state["epoch"], rank, world, tcfg.get("loader_workers", 0),
                               device.type == "cuda", start=state["epoch_step"])
        for batch in stream:
            for group, base in zip(optimizer.param_groups, base_lrs):
                group["lr"] = base * lr_scale(state["step"], tcfg["warmup_steps"], total, tcfg["lr_schedule"])
            with autocast:
                loss = ddp_model(_to(batch, device))
            loss.backward()
            if tcfg["grad_clip"] > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg["grad_clip"])
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            state["step"] += 1
            state["epoch_step"] += 1
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.4f}", epoch=state["epoch"] + 1)
            epoch_done = state["epoch_step"] == plan[state["epoch"]]
            if epoch_done:
                state["epoch"], state["epoch_step"] = state["epoch"] + 1, 0
            if (eval_every and state["step"] % eval_every == 0) or (not eval_every and epoch_done) \
                    or state["step"] >= total or (epoch_done and state["epoch"] == epochs):
                stop = validate(losses, t0)
                losses, t0 = [], time.time()
                model.train()
                if stop or state["step"] >= total:
                    break
            if epoch_done:
                break
    bar.close()

    result = None
    if master:
        if not best_path.is_file() or not spec.train or state["best_step"] == 0:
            valid = evaluate("valid")  # zero_shot (or no step at all): the loaded model is the best model
            state.update(best=valid["metrics"][MONITOR], best_step=0, best_epoch=0)
            ckpt.save(best_path, payload(0, 0, valid["metrics"]))
        best = ckpt.read(best_path)
        ckpt.load_into(model, best)
        valid, test = evaluate("valid"), evaluate("test")
        tracker.summary({**{f"test/{k}": v for k, v in test["metrics"].items()},
                         **{f"best_valid/{k}": v for k, v in valid["metrics"].items()},
                         "best_step": state["best_step"], "best_epoch": state["best_epoch"],
                         "steps": state["step"], "evaluations": len(state["log"])})
        wall = round(time.time() - start_time, 2)
        tracker.log({"test/" + k: v for k, v in test["metrics"].items()})
        if tracker.run is not None:  # what the model recommends, for people looking at the dashboard
            from transrec.recommend import sample_recommendations

            rows = sample_recommendations(model, data, seed=seed)
            tracker.table("sample_recommendations", [{k: v for k, v in r.items() if k != "image_row"} for r in rows],
                          images={i: data.images[r["image_row"]] for i, r in enumerate(rows) if r["image_row"] >= 0})
        tracker.finish()
        state["complete"] = True
        if spec.train and last_path.is_file():
            # A complete run is never resumed: keep only what says so (drops ~25 MB of weights and Adam state)
            last = torch.load(last_path, map_location="cpu", weights_only=False)
            ckpt.save(last_path, {"format": ckpt.FORMAT, "fingerprint": last["fingerprint"],
                                  "state": {**last["state"], "complete": True}})
        result = write_log(True, {"valid": valid["metrics"], "test": test["metrics"], "wall_s": wall,
                                  "stopped_early": spec.train and state["step"] < total})
        write_json(metrics_path(params, spec.platform, spec.name),
                   metrics_document(data, spec.platform, spec.name, valid, test, ecfg, ks, mcfg.user_encoder.max_len,
                                    start_time, checkpoint=str(best_path), epoch=state["best_epoch"], kind=spec.kind,
                                    wandb_run_dir=tracker.run_dir))
        print(f"{spec.platform}/{spec.name}: best step {state['best_step']} of {state['step']} (epoch "
              f"{state['best_epoch']}), test hr@10 "
              f"{test['metrics']['hr@10']:.4f} ndcg@10 {test['metrics']['ndcg@10']:.4f}; {wall:.1f} s -> {out}")
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
        dist.destroy_process_group()
    return result
