"""DDP on CPU: `transrec transfer` under torchrun (2 processes, gloo) trains the same weights as one process.

Both runs train the same tiny content model (scratch setting, frozen-layer cache) on the same global
batches: the single process takes batch_size users per step, each DDP rank takes its slice of the same
global batch (Batches.epoch(rank, world)) and DDP averages the gradients. Everything random is switched
off or shared: dropout is 0 in the user encoder and in the text encoder's trainable top (a tiny BERT
saved with zero dropout: a dropout mask cannot be split between ranks the way one process draws it),
negatives come from a generator seeded with (seed, epoch, step) on every rank, and the image encoder's
batch norm uses its running statistics. What is left are float summation-order differences.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from transrec.cli import main
from transrec.model import checkpoint as ckpt
from transrec.tiny import build_platforms, tiny_bert, tiny_params, with_results
from transrec.train.loop import run
from transrec.train.settings import transfer_spec

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.getbasetemp() / "ddp_world"
    bert = tiny_bert(root / "bert")
    config = json.loads((bert / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (bert / "config.json").write_text(json.dumps(config, indent=2))
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    params = tiny_params(root, base, bert)
    params = with_results(params, root / "results", root / "params.yaml",
                          model={"user_encoder": {"dropout": 0.0}},
                          train={"cache": True, "cache_dtype": "float32", "batch_size": 6, "epochs": 1,
                                 "warmup_steps": 0, "num_threads": 1, "pretrain": {"epochs": 1}})
    if not (root / ".built").is_file():
        build_platforms(root / "params.yaml", names=("tgt",))
        assert main(["cache", "tgt", "--params", str(root / "params.yaml")]) == 0
        (root / ".built").touch()
    return params


def _torchrun(params_path: Path, nproc: int) -> subprocess.CompletedProcess:
    env = {**os.environ, "WANDB_MODE": "disabled", "OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1",
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
           "-m", "transrec.cli", "transfer", "tgt", "scratch", "--params", str(params_path)]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)


def _weights(results: Path) -> dict:
    """The trained weights: one epoch, so the model folder holds the model after the last step."""
    return ckpt.read(results / "models" / "tgt" / "scratch")["state"]


def test_ddp_two_processes_match_one_process(world, tmp_path):
    single = with_results(world, tmp_path / "single")
    ddp = with_results(world, tmp_path / "ddp", tmp_path / "ddp.yaml")
    proc = _torchrun(tmp_path / "ddp.yaml", 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log_ddp = json.loads((tmp_path / "ddp" / "models" / "tgt" / "scratch" / "train_log.json").read_text())
    assert log_ddp["world_size"] == 2 and log_ddp["complete"]
    log_single = run(single, transfer_spec(single, "tgt", "scratch"), progress=False)
    assert log_single["world_size"] == 1
    steps = [e["steps"] for e in log_single["evaluations"]]
    assert steps == [e["steps"] for e in log_ddp["evaluations"]] and sum(steps) >= 4  # same global steps
    assert log_single["best_epoch"] == log_ddp["best_epoch"] == 1
    assert _uneven_rank_targets(world)  # the ranks' slices hold different target counts: the loss must be
    # normalised by the global batch, not per rank, for DDP's gradient average to equal the single gradient

    a, b = _weights(Path(single["paths"]["results"])), _weights(Path(ddp["paths"]["results"]))
    assert set(a) == set(b) and len(a) > 10
    init = _initial_weights(world)
    moved = {k for k in a if a[k].is_floating_point() and not torch.equal(a[k], init[k])}
    assert any(k.startswith("items.text.top.") for k in moved)  # the encoders' tops trained, not only the user side
    assert any(k.startswith("items.image.units.") for k in moved) and any(k.startswith("user.") for k in moved)
    for key in a:
        if a[key].is_floating_point():
            update = (a[key] - init[key]).abs().max().item()  # how far training moved this tensor
            diff = (a[key] - b[key]).abs().max().item()
            # Adam divides by the gradient's running RMS: where a gradient is zero in theory (attention key
            # biases), summation-order noise becomes a visible update (~1e-5 here); a wrong gradient (e.g. the
            # ranks' losses averaged instead of normalised by the global batch) moves weights by ~the update itself
            assert diff <= 1e-5 + 2e-2 * update, f"{key}: DDP and single differ by {diff:.3g} (update {update:.3g})"
    # the metrics (rank 0 evaluates) agree as well
    for e_single, e_ddp in zip(log_single["evaluations"], log_ddp["evaluations"]):
        assert e_ddp["valid"] == pytest.approx(e_single["valid"], abs=1e-6)
        # the logged loss is the mean over ranks (each rank's loss is its slice's share of the global
        # batch's loss), so it equals the one-process loss; rank 0's share alone would not
        assert e_ddp["loss"] == pytest.approx(e_single["loss"], rel=1e-4)
    assert log_ddp["test"] == pytest.approx(log_single["test"], abs=1e-6)


def _initial_weights(params: dict) -> dict:
    """The model as built before any step (Recommender seeds its own initialisation)."""
    from transrec.data.platform import PlatformData
    from transrec.model.build import build_model

    data = PlatformData(Path(params["paths"]["data"]) / "processed" / "tgt", "tgt")
    model = build_model(params, data, "content", "cpu", use_cache=params["train"]["cache"],
                        dtype=params["train"]["cache_dtype"])
    return ckpt.model_state(model)


def _uneven_rank_targets(params: dict) -> bool:
    from transrec.data.platform import PlatformData
    from transrec.model.config import ModelConfig
    from transrec.train.data import Batches

    data = PlatformData(Path(params["paths"]["data"]) / "processed" / "tgt", "tgt")
    batches = Batches(data, ModelConfig.from_dict(params["model"]), params["train"]["batch_size"], params["train"]["seed"])
    return any(int((r0["targets"] >= 0).sum()) != int((r1["targets"] >= 0).sum())
               for r0, r1 in zip(batches.epoch(0, 0, 2), batches.epoch(0, 1, 2)))


def test_ddp_trains_the_side_tower_like_one_process(world, tmp_path):
    """The side tower under DDP (its encoders run live, no cache; adapter dropout 0): the same weights."""
    side = {"item_tower": "side", "text_encoder": {"trainable_blocks": 0}, "image_encoder": {"trainable_blocks": 0},
            "side": {"dropout": 0.0}}
    single = with_results(world, tmp_path / "single", model=side, train={"cache": False})
    with_results(world, tmp_path / "ddp", tmp_path / "ddp.yaml", model=side, train={"cache": False})
    proc = _torchrun(tmp_path / "ddp.yaml", 2)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    log_ddp = json.loads((tmp_path / "ddp" / "models" / "tgt" / "scratch" / "train_log.json").read_text())
    log_single = run(single, transfer_spec(single, "tgt", "scratch"), progress=False)
    assert log_ddp["world_size"] == 2 and log_ddp["steps"] == log_single["steps"] >= 4
    a, b = _weights(tmp_path / "single"), _weights(tmp_path / "ddp")
    assert set(a) == set(b) and any(k.startswith("items.text_stream.") for k in a)
    init = _initial_weights(single)
    for key in a:
        if a[key].is_floating_point():  # the tolerance of the test above, for the same reason
            update, diff = (a[key] - init[key]).abs().max().item(), (a[key] - b[key]).abs().max().item()
            assert diff <= 1e-5 + 2e-2 * update, f"{key}: DDP and single differ by {diff:.3g} (update {update:.3g})"
    assert log_ddp["test"] == pytest.approx(log_single["test"], abs=1e-6)
