"""The training loop, nanoGPT style: one model, a plain loop over steps, read top to bottom:
run = prepare (runtime, data, model, optimizer) -> resume (resume.safetensors) -> fit (steps, validation, early
stopping, checkpoints) -> finish (best checkpoint on valid and test, metrics file, W&B summary).

- Budget and early stopping in steps: validation NDCG@10 (full ranking) every train.eval_every steps
  (0 = at the end of every epoch), patience counted in evaluations, at most train.epochs epochs and
  train.max_steps steps (0 = no step limit); the model folder (model/, transrec.model.checkpoint) holds the
  best evaluation's weights; its config.json and model card are written when the run finishes. The learning
  rate warms up linearly over train.warmup_steps, then stays (constant) or decays to 0 over the budget
  (cosine).
- resume.safetensors at every evaluation (transrec.tensor_file: tensors + JSON, no pickle): model,
  optimizer, the position (epoch, step within it, global step), torch RNG states, early-stop state, the log
  so far and the W&B run id. A killed run restarts from it (batches are a function of (seed, epoch, step),
  so the resumed run draws what the uninterrupted one would) and ends with the same result. A resume file
  from a different configuration is ignored (the run starts over). When the run completes, it shrinks to a
  marker (fingerprint + state): rerunning a complete run does nothing.
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
import shutil
import time
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from transrec import __version__
from transrec.atomic import write_json
from transrec.data.platform import PlatformData
from transrec.evaluate.document import metrics_document, write_run
from transrec.evaluate.per_user import cold_summary
from transrec.evaluate.ranking import model_scorer, rank_split
from transrec.model import cache as frozen_cache
from transrec.model import card, lora
from transrec.model import checkpoint as ckpt
from transrec.model.build import build_model
from transrec.model.recommender import Recommender
from transrec.paths import MODEL_CONFIG, MODEL_DIR, MODEL_WEIGHTS, RESUME, SPLIT, TRAIN_LOG, metrics_file, processed_dir
from transrec.runtime import Runtime, mean_over_ranks, rank0_flag, setup, teardown
from transrec.tensor_file import load_tree, save_tree
from transrec.train.config import TrainConfig
from transrec.train.data import Batches, epoch_batches
from transrec.train.optimizer import CpuAdamW, adamw
from transrec.train.settings import RunSpec
from transrec.train.tracking import Tracker

MONITOR = "ndcg@10"


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
@dataclass
class Run:
    """Everything one training run holds, built by `prepare`; `fit` and `finish` read and advance it."""

    params: dict
    spec: RunSpec
    tcfg: TrainConfig               # the train section with this setting's overrides
    rt: Runtime
    data: PlatformData
    model: Recommender
    seed: int
    fingerprint: str                # a resume file is resumed only by the configuration that wrote it
    optimizer: CpuAdamW | torch.optim.AdamW | None
    load_report: dict | None        # what the source checkpoint filled (finetune, frozen, zero_shot)
    cache: bool                     # the catalogue comes from the frozen-layer cache
    trainable: int                  # parameters the optimizer updates
    started: float = field(default_factory=time.time)
    # position: epochs done, steps done within the current epoch, steps done in all; early-stop state
    state: dict = field(default_factory=lambda: {"epoch": 0, "epoch_step": 0, "step": 0, "best": float("-inf"),
                                                 "best_step": 0, "best_epoch": 0, "bad": 0, "log": [],
                                                 "wandb_id": None, "complete": False})
    resumed: bool = False
    tracker: Tracker | None = None
    batches: Batches | None = None
    plan: list[int] = field(default_factory=list)  # steps of each epoch
    # the best checkpoint's validation ranking, when this process ranked it: finish reuses it rather than
    # ranking every validation user again (at 2M users one ranking is ~1 h on a CPU: docs/scale.md)
    best_valid: dict | None = None
    total: int = 0                                  # the step budget

    @property
    def out(self) -> Path:
        return Path(self.spec.out_dir)

    @property
    def model_dir(self) -> Path:
        return self.out / MODEL_DIR

    @property
    def name(self) -> str:
        return f"{self.spec.platform}/{self.spec.name}"

    def evaluate(self, split: str, progress: bool = True) -> dict:
        ecfg = self.params["evaluate"]
        return rank_split(self.data, split, model_scorer(self.model, self.rt.device), self.ks, ecfg["mask_history"],
                          ecfg["chunk_users"], self.model.cfg.user_encoder.max_len, self.rt.device, progress)

    @property
    def ks(self) -> list[int]:
        return sorted(set(self.params["evaluate"]["ks"]) | {10})


def run(params: dict, spec: RunSpec, restart: bool = False, progress: bool = True) -> dict:
    """Train (unless zero_shot), evaluate the best checkpoint, write the model folder, train_log.json and
    the metrics JSON. A complete run returns its log at once; an interrupted one resumes from its resume file."""
    r = prepare(params, spec)
    if resume(r, restart):
        return json.loads((r.out / TRAIN_LOG).read_text())
    r.tracker = open_tracker(r)
    if spec.train:
        fit(r, progress)
    result = finish(r, progress) if r.rt.master else None
    teardown(r.rt)  # after every rank's last collective (not on an error: the other ranks may be gone)
    return result


def prepare(params: dict, spec: RunSpec) -> Run:
    """Runtime, data and model (with the source checkpoint loaded), optimizer, fingerprint."""
    tcfg = TrainConfig.for_setting(params["train"], spec.setting)
    rt = setup(tcfg.device, tcfg.num_threads, tcfg.dist_timeout_min)
    data = PlatformData(processed_dir(params, spec.platform), spec.platform)
    use_cache = bool(tcfg.cache) and spec.kind == "content"
    model = build_model(params, data, spec.kind, rt.device, use_cache, tcfg.cache_dtype)
    load_report = None
    if spec.init_from is not None:
        load_report = ckpt.load_into(model, ckpt.read(spec.init_from), str(spec.init_from), transfer=True)
        if rt.master:
            print(f"{spec.platform}/{spec.name}: " + ckpt.summarize(load_report))
    if spec.adapters:  # after loading: the source's trained blocks become the adapters' fixed base
        lora.add_adapters(model, **params["transfer"]["lora"])
    if spec.freeze_items:
        model.freeze_items()
    fingerprint = _hash_json({"model": model.cfg.to_dict(), "train": tcfg.learning(),
                              "spec": [spec.platform, spec.name, spec.kind, spec.freeze_items, spec.train],
                              "lora": params["transfer"]["lora"] if spec.adapters else None,
                              "init": frozen_cache.file_hash(Path(spec.init_from) / MODEL_WEIGHTS) if spec.init_from else None,
                              "split": frozen_cache.file_hash(data.proc / SPLIT), "world": rt.world})
    optimizer = None
    if spec.train:
        optimizer = adamw(model.param_groups(tcfg.lr, tcfg.encoder_lr, tcfg.weight_decay), rt.device)
    seed = tcfg.seed + spec.variant.seed
    torch.manual_seed(seed)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad) if spec.train else 0
    return Run(params, spec, tcfg, rt, data, model, seed, fingerprint, optimizer, load_report, use_cache, trainable)


def resume(r: Run, restart: bool = False) -> bool:
    """Pick up the run's resume file (unless restart): True when the run is already complete (nothing to do);
    an interrupted run of the same configuration continues from its last evaluation."""
    resume_path, log_path = r.out / RESUME, r.out / TRAIN_LOG
    if resume_path.is_file() and r.spec.train and not restart:
        last, _ = load_tree(resume_path)
        if last.get("fingerprint") != r.fingerprint:
            if r.rt.master:
                print(f"{resume_path}: from a different configuration; starting over")
        elif last["state"]["complete"]:
            if (r.model_dir / MODEL_CONFIG).is_file() and log_path.is_file() \
                    and metrics_file(r.params, r.spec.platform, r.spec.name).is_file():
                if r.rt.master:
                    print(f"{r.name}: already complete ({log_path}); --restart to train again")
                return True
        else:
            r.model.load_state_dict(last["model"], strict=False)
            r.optimizer.load_state_dict(last["optimizer"])
            _set_rng_state(last["rng"])
            r.state, r.resumed = last["state"], True
            if r.rt.master:
                print(f"{r.name}: resuming from {resume_path} at step {r.state['step']} (epoch {r.state['epoch'] + 1})")
    if r.spec.train and not r.resumed:  # never evaluate a model left by another configuration
        shutil.rmtree(r.model_dir, ignore_errors=True)
    return False


def open_tracker(r: Run) -> Tracker:
    spec = r.spec
    tracker = Tracker(r.params, spec.job_type, r.name, [spec.platform, spec.setting, *spec.tags],
                      {"platform": spec.platform, "setting": spec.setting, "run": spec.name, "kind": spec.kind,
                       "variant": spec.variant.name or "main", "user_fraction": spec.user_fraction,
                       "replicate": spec.variant.seed, "seed": r.seed,
                       "init_from": str(spec.init_from) if spec.init_from else None, "model": r.model.cfg.to_dict(),
                       "train": r.tcfg.to_dict(), "evaluate": r.params["evaluate"], "world_size": r.rt.world,
                       "device": str(r.rt.device), "threads": r.rt.threads, "cache": r.cache,
                       "loaded_tensors": r.load_report["counts"] if r.load_report else None},
                      run_id=r.state["wandb_id"], enabled=r.rt.master)
    r.state["wandb_id"] = tracker.run_id
    return tracker


# ---- fit: the steps, validation every eval_every steps (or epoch), early stopping, checkpoints --------
def fit(r: Run, progress: bool = True) -> None:
    tcfg, state, rt, model = r.tcfg, r.state, r.rt, r.model
    if tcfg.compile:
        # the user encoder sees fixed [B, N, d] inputs (only the last batch is shorter): compile it alone;
        # the item towers see a different number of distinct items every step
        model.user.compile(dynamic=True)  # in place: the state_dict keys (checkpoints) stay the same
    ddp_model = model
    if rt.world > 1:
        from torch.nn.parallel import DistributedDataParallel

        # A content model's step may hold no text (or no image) item at all, leaving that tower without
        # gradients: DDP must then look for unused parameters. An ID model uses all of its parameters.
        ddp_model = DistributedDataParallel(model, device_ids=[rt.local_rank] if rt.device.type == "cuda" else None,
                                            find_unused_parameters=r.spec.kind == "content")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16) if rt.device.type == "cuda" else nullcontext()
    r.batches = Batches(r.data, model.cfg, tcfg.batch_size, r.seed, r.spec.user_fraction, tcfg.samples,
                        tcfg.source_sampling)
    base_lrs = [group["lr"] for group in r.optimizer.param_groups]
    # The budget: epochs (their step counts vary a little with the windows' random offsets), stretched to
    # at least min_steps steps (a run on a share of a small target has epochs of one step), capped by max_steps.
    r.plan = [r.batches.steps_per_epoch(e) for e in range(tcfg.epochs)]
    while sum(r.plan) < tcfg.min_steps and (not r.plan or r.plan[-1] > 0):
        r.plan.append(r.batches.steps_per_epoch(len(r.plan)))
    epochs = len(r.plan)
    r.total = min(sum(r.plan), tcfg.max_steps or sum(r.plan))
    eval_every = tcfg.eval_every  # 0: at the end of every epoch

    bar = tqdm(total=r.total, initial=state["step"], unit="step", desc=r.name,
               disable=not (rt.master and progress and r.total))
    stop = False
    while not stop and state["epoch"] < epochs and state["step"] < r.total:
        model.train()
        losses, t0 = [], time.time()
        stream = epoch_batches(r.batches, state["epoch"], rt.rank, rt.world, tcfg.loader_workers,
                               rt.device.type == "cuda", start=state["epoch_step"])
        for batch in stream:
            for group, base in zip(r.optimizer.param_groups, base_lrs):
                group["lr"] = base * lr_scale(state["step"], tcfg.warmup_steps, r.total, tcfg.lr_schedule)
            with autocast:
                loss = ddp_model(_to(batch, rt.device))
            loss.backward()
            if tcfg.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), tcfg.grad_clip)
            r.optimizer.step()
            r.optimizer.zero_grad(set_to_none=True)
            losses.append(float(loss.detach()))
            state["step"] += 1
            state["epoch_step"] += 1
            bar.update()
            bar.set_postfix(loss=f"{losses[-1]:.4f}", epoch=state["epoch"] + 1)
            epoch_done = state["epoch_step"] == r.plan[state["epoch"]]
            if epoch_done:
                state["epoch"], state["epoch_step"] = state["epoch"] + 1, 0
            if (eval_every and state["step"] % eval_every == 0) or (not eval_every and epoch_done) \
                    or state["step"] >= r.total or (epoch_done and state["epoch"] == epochs):
                stop = validate(r, losses, t0, progress)
                losses, t0 = [], time.time()
                model.train()
                if stop or state["step"] >= r.total:
                    break
            if epoch_done:
                break
    bar.close()


def validate(r: Run, losses: list[float], t0: float, progress: bool = True) -> bool:
    """Evaluate, keep the best weights, checkpoint the position; True when patience has run out."""
    state = r.state
    loss = mean_over_ranks(r.rt, float(np.mean(losses)) if losses else float("nan"))  # not rank 0's share only
    stop = False
    if r.rt.master:
        train_s = time.time() - t0
        valid = r.evaluate("valid", progress)
        score = valid["metrics"][MONITOR]
        step, epoch = state["step"], state["epoch"] + (state["epoch_step"] > 0)
        if score > state["best"]:
            state.update(best=score, best_step=step, best_epoch=epoch, bad=0)
            save_best(r, step, epoch, valid["metrics"])
            r.best_valid = valid
        else:
            state["bad"] += 1
        stop = state["bad"] >= r.tcfg.patience and step >= r.tcfg.min_steps
        position = state["epoch"] + state["epoch_step"] / max(1, r.plan[min(state["epoch"], len(r.plan) - 1)])
        entry = {"step": step, "epoch": round(position, 3), "loss": loss, "steps": len(losses), "valid": valid["metrics"],
                 "train_s": round(train_s, 2), "wall_s": round(time.time() - t0, 2)}
        state["log"].append(entry)
        state["complete"] = stop or step >= r.total
        r.tracker.log({"epoch": entry["epoch"], "train/loss": loss, "train/seconds": train_s,
                       **{f"valid/{k}": v for k, v in valid["metrics"].items()}}, step=step)
        tqdm.write(f"{r.name} step {step} (epoch {entry['epoch']:g}): loss {loss:.4f}  valid {MONITOR} {score:.4f}  "
                   f"hr@10 {valid['metrics']['hr@10']:.4f}  ({entry['wall_s']:.1f} s)"
                   + ("  best" if state["best_step"] == step else ""))
        save_tree(r.out / RESUME, {"fingerprint": r.fingerprint, "model": ckpt.model_state(r.model, merge_adapters=False),
                                   "optimizer": r.optimizer.state_dict(), "rng": _rng_state(), "state": state})
        write_log(r, False)
    return rank0_flag(r.rt, stop)


def save_best(r: Run, step: int, epoch: int, valid: dict | None) -> None:
    """The model folder's weights, with what a reader needs to rebuild the model (transrec.model.checkpoint)."""
    ckpt.save_weights(r.model_dir, ckpt.model_state(r.model), {
        "kind": r.spec.kind, "model_config": r.model.cfg.to_dict(),
        "n_items": r.data.n_items if r.spec.kind == "id" else None, "image_size": r.data.image_size,
        "items_frozen": r.model.items_frozen, "platform": r.spec.platform, "setting": r.spec.setting,
        "run": r.spec.name, "step": step, "epoch": epoch, "valid": valid, "catalogue": ckpt.catalogue_hash(r.data.proc)})


def write_log(r: Run, complete: bool, extra: dict | None = None) -> dict:
    spec, state = r.spec, r.state
    doc = {"platform": spec.platform, "setting": spec.setting, "run": spec.name, "kind": spec.kind,
           "complete": complete, "user_fraction": spec.user_fraction, "seed": r.seed,
           "trained_users": int(len(r.batches.eligible)) if r.batches else 0,
           "init_from": str(spec.init_from) if spec.init_from else None, "device": str(r.rt.device),
           "threads": r.rt.threads, "world_size": r.rt.world, "cache": r.cache, "resumed": r.resumed,
           "visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),  # the GPU slot gpu-run gave the job
           "started_unix": r.started, "written_unix": time.time(),
           "trainable_parameters": r.trainable,
           "evaluations": state["log"], "steps": state["step"], "best_step": state["best_step"],
           "best_epoch": state["best_epoch"],
           "best_valid_" + MONITOR: None if state["best"] == float("-inf") else state["best"],
           "load_report": r.load_report,
           "image_weights": r.model.items.image.load_report if spec.kind == "content" else None,
           "wandb_run_dir": r.tracker.run_dir, **(extra or {})}
    write_json(r.out / TRAIN_LOG, doc)
    return doc


# ---- finish: the best checkpoint on valid and test, the metrics file, the W&B summary ---------------
STILL_IMPROVING = 0.9  # a run that ends at its budget with its best step past this share of it had not converged


def stop_record(r: Run, stopped_early: bool) -> dict:
    """Why the run stopped and where its best checkpoint lies in its budget: `still_improving` flags a run that
    ended at its budget (not by patience) with its best step in the last 10% of it, a number that more steps
    would likely have moved (run_info, the model's config.json, the report and W&B show it)."""
    state, spec = r.state, r.spec
    if not spec.train:
        reason = "not trained"
    elif stopped_early:
        reason = "patience"
    else:
        reason = "step budget" if r.tcfg.max_steps and r.total == r.tcfg.max_steps else "epoch budget"
    share = state["best_step"] / r.total if spec.train and r.total else None
    return {"stop_reason": reason, "steps": state["step"], "budget_steps": r.total if spec.train else 0,
            "best_step": state["best_step"], "best_share": None if share is None else round(share, 4),
            "still_improving": bool(spec.train and not stopped_early and share is not None and share > STILL_IMPROVING)}
def finish(r: Run, progress: bool = True) -> dict:
    spec, state, model = r.spec, r.state, r.model
    resume_path = r.out / RESUME
    if not (r.model_dir / MODEL_WEIGHTS).is_file() or not spec.train or state["best_step"] == 0:
        valid = r.evaluate("valid", progress)  # zero_shot (or no step at all): the loaded model is the best model
        state.update(best=valid["metrics"][MONITOR], best_step=0, best_epoch=0)
        save_best(r, 0, 0, valid["metrics"])
        r.best_valid = valid
    if spec.adapters:  # the model folder holds the merged weights of the plain architecture: rank with those
        lora.remove_adapters(model)
        r.best_valid = None
    ckpt.load_into(model, ckpt.read(r.model_dir, finished=False))
    valid = r.best_valid if r.best_valid is not None else r.evaluate("valid", progress)  # a resumed run ranks again
    test = r.evaluate("test", progress)
    wall = round(time.time() - r.started, 2)
    state["complete"] = True
    stopped_early = spec.train and state["step"] < r.total
    training = stop_record(r, stopped_early)
    document = metrics_document(r.data, spec.platform, spec.name, valid, test, r.params["evaluate"], r.ks,
                                model.cfg.user_encoder.max_len, r.started, checkpoint=str(r.model_dir),
                                epoch=state["best_epoch"], kind=spec.kind, wandb_run_dir=r.tracker.run_dir,
                                training=training)
    encoders = None
    if spec.kind == "content":  # what a reader's local encoders must match (checkpoint.load_into checks)
        encoders = {"identity": ckpt.encoder_identity(model.cfg),
                    "weight_files": frozen_cache.encoder_files(model.cfg.text_encoder, model.cfg.image_encoder)}
    config = ckpt.write_config(r.model_dir, {
        "encoders": encoders, "run_fingerprint": r.fingerprint, "params_sha256": _hash_json(r.params),
        "trainable_parameters": r.trainable, "steps": state["step"], "stopped_early": stopped_early if spec.train else None,
        "training": training,
        "metrics": {"valid": valid["metrics"], "test": test["metrics"]}, "protocol": document["protocol"],
        "init_from": str(spec.init_from) if spec.init_from else None, "transrec_version": __version__})
    card.write(r.model_dir, config, r.data.proc)
    r.tracker.summary({**{f"test/{k}": v for k, v in test["metrics"].items()},
                       **{f"best_valid/{k}": v for k, v in valid["metrics"].items()},
                       "best_step": state["best_step"], "best_epoch": state["best_epoch"],
                       "steps": state["step"], "evaluations": len(state["log"]),
                       "stop_reason": training["stop_reason"], "still_improving": training["still_improving"],
                       **cold_summary(document["cold_items"])})
    r.tracker.log({"test/" + k: v for k, v in test["metrics"].items()})
    if r.tracker.run is not None:  # what the model recommends, for people looking at the dashboard
        from transrec.recommend import sample_recommendations

        rows = sample_recommendations(model, r.data, seed=r.seed)
        r.tracker.table("sample_recommendations", [{k: v for k, v in row.items() if k != "image_row"} for row in rows],
                        images={i: r.data.images[row["image_row"]] for i, row in enumerate(rows) if row["image_row"] >= 0})
    r.tracker.artifact(f"model-{spec.platform}-{spec.name}", r.model_dir, "model",
                       {k: config[k] for k in ("kind", "platform", "setting", "step", "metrics")})
    r.tracker.finish()
    if spec.train and resume_path.is_file():
        # A complete run is never resumed: keep only what says so (drops ~25 MB of weights and Adam state)
        last, _ = load_tree(resume_path)
        save_tree(resume_path, {"fingerprint": last["fingerprint"], "state": {**last["state"], "complete": True}})
    result = write_log(r, True, {"valid": valid["metrics"], "test": test["metrics"], "wall_s": wall,
                                 "stopped_early": stopped_early, "training": training})
    write_run(r.params, document)
    print(f"{r.name}: best step {state['best_step']} of {state['step']} (epoch {state['best_epoch']}), test hr@10 "
          f"{test['metrics']['hr@10']:.4f} ndcg@10 {test['metrics']['ndcg@10']:.4f}; {wall:.1f} s -> {r.out}")
    return result
