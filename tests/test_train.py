"""Training runs: determinism, checkpoint load reports, resume after a kill, W&B offline readback."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from transrec.cli import main
from transrec.evaluate.document import read_run
from transrec.model import checkpoint as ckpt
from transrec.model.config import ModelConfig
from transrec.model.recommender import Recommender
from transrec.tensor_file import load_tree
from transrec.tiny import with_results
from transrec.train.loop import run
from transrec.train.settings import pretrain_spec, transfer_spec
from transrec.train.tracking import read_offline_run

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def world(tiny_world_params, tmp_path_factory):
    params = tiny_world_params
    return with_results(params, params["paths"]["results"], train={"cache": False})


@pytest.fixture(scope="module")
def pretrained(world, tmp_path_factory):
    params = with_results(world, tmp_path_factory.mktemp("pretrain") / "results")
    log = run(params, pretrain_spec(params), progress=False)
    return params, log


def test_pretrain_writes_run_dir_and_log(pretrained):
    params, log = pretrained
    out = Path(params["paths"]["results"]) / "models" / "src" / "pretrain"
    assert {p.name for p in out.iterdir()} >= {"model", "resume.safetensors", "train_log.json"}
    assert {p.name for p in (out / "model").iterdir()} == {"model.safetensors", "config.json", "README.md"}
    assert log["complete"] and len(log["evaluations"]) == 2 and log["platform"] == "src"
    for epoch in log["evaluations"]:
        assert epoch["loss"] > 0 and 0 <= epoch["valid"]["ndcg@10"] <= 1 and epoch["wall_s"] > 0
    assert set(log["test"]) == {"hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"}
    weights = log["image_weights"]  # the offline EfficientNet-Lite0 state dict loads completely
    assert weights["tensors"] == 296 and weights["missing"] == [] and weights["unexpected"] == []
    best = ckpt.read(out)  # the run's folder names its model folder
    assert not any(k.startswith(("items.text.bottom", "items.text.embeddings")) for k in best["state"])


def test_same_seed_same_run(world, tmp_path):
    logs = []
    for name in ("a", "b"):
        params = with_results(world, tmp_path / name)
        logs.append(run(params, transfer_spec(params, "tgt", "scratch"), progress=False))
    assert [e["loss"] for e in logs[0]["evaluations"]] == [e["loss"] for e in logs[1]["evaluations"]]
    assert logs[0]["test"] == logs[1]["test"]
    other = with_results(world, tmp_path / "c", train={"seed": 1})
    log_c = run(other, transfer_spec(other, "tgt", "scratch"), progress=False)
    assert [e["loss"] for e in log_c["evaluations"]] != [e["loss"] for e in logs[0]["evaluations"]]


def test_checkpoint_load_report_says_what_was_not_loaded_and_why(pretrained):
    params, _ = pretrained
    payload = ckpt.read(Path(params["paths"]["results"]) / "models" / "src" / "pretrain" / "model")
    cfg = ModelConfig.from_dict(payload["model_config"])
    content = Recommender(cfg, "content", image_size=16)
    report = ckpt.load_into(content, payload, "the model folder")
    reasons = set(report["not_loaded"].values())
    assert all(r.startswith("frozen encoder bottom") for r in reasons) and report["counts"]["unused"] == 0
    assert any(k.startswith("items.text.top.") for k in report["loaded"])
    assert any(k.startswith("user.blocks.") for k in report["loaded"])
    id_model = Recommender(cfg, "id", n_items=40)
    report = ckpt.load_into(id_model, payload, "the model folder", transfer=True)
    assert report["not_loaded"]["items.table.weight"].startswith("item-ID table: items are platform-specific")
    assert all(k.startswith("user.") for k in report["loaded"]) and report["counts"]["loaded"] > 10
    assert all(v == "not in this model" for v in report["unused"].values())  # the content encoders' tops
    text = ckpt.summarize(report)
    assert "item-ID table" in text and "not loaded" in text.splitlines()[0]


SIDE = {"item_tower": "side", "text_encoder": {"trainable_blocks": 0}, "image_encoder": {"trainable_blocks": 0}}


@pytest.mark.parametrize("model", [{}, SIDE], ids=["heads", "side"])
def test_killed_run_resumes_to_the_same_result(world, tmp_path, model):
    settings = {"train": {"epochs": 4, "patience": 10}, "model": model}
    reference = with_results(world, tmp_path / "reference", **settings)
    expected = run(reference, transfer_spec(reference, "tgt", "scratch"), progress=False)
    params_path = tmp_path / "params.yaml"
    with_results(world, tmp_path / "killed", params_path, **settings)
    out = tmp_path / "killed" / "models" / "tgt" / "scratch"
    env = {**os.environ, "WANDB_MODE": "disabled"}
    proc = subprocess.Popen([sys.executable, "-m", "transrec.cli", "transfer", "tgt", "scratch", "--params",
                             str(params_path)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "resume.safetensors").exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = load_tree(out / "resume.safetensors")[0]["state"]
    assert not state["complete"] and 1 <= state["epoch"] < 4  # really killed mid-run
    assert main(["transfer", "tgt", "scratch", "--params", str(params_path)]) == 0
    resumed = json.loads((out / "train_log.json").read_text())
    assert resumed["resumed"] and resumed["complete"]
    assert [e["loss"] for e in resumed["evaluations"]] == [e["loss"] for e in expected["evaluations"]]
    assert [e["valid"] for e in resumed["evaluations"]] == [e["valid"] for e in expected["evaluations"]]
    assert resumed["test"] == expected["test"] and resumed["best_epoch"] == expected["best_epoch"]
    marker = load_tree(out / "resume.safetensors")[0]
    assert marker["state"]["complete"] and "model" not in marker and "optimizer" not in marker  # slimmed
    assert main(["transfer", "tgt", "scratch", "--params", str(params_path)]) == 0  # complete: nothing to do


def test_wandb_offline_run_reads_back(world, tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    params = with_results(world, tmp_path / "results", wandb={"group": "tiny-study"})
    log = run(params, transfer_spec(params, "tgt", "id"), progress=False)
    run_dir = Path(log["wandb_run_dir"])
    assert run_dir.parent.parent == tmp_path / "results" / "wandb"
    back = read_offline_run(run_dir)
    assert back["group"] == "tiny-study" and back["job_type"] == "transfer" and set(back["tags"]) == {"tgt", "id"}
    assert back["name"] == "tgt/id" and back["config"]["variant"] == "main"  # W&B conventions: <platform>/<run>
    assert back["config"]["platform"] == "tgt" and back["config"]["setting"] == "id"
    assert back["config"]["train"]["lr"] == params["train"]["lr"] and back["config"]["model"]["d"] == 32
    epochs = [h for h in back["history"] if "train/loss" in h]
    assert [h["train/loss"] for h in epochs] == pytest.approx([e["loss"] for e in log["evaluations"]])
    assert [h["valid/ndcg@10"] for h in epochs] == pytest.approx([e["valid"]["ndcg@10"] for e in log["evaluations"]])
    assert back["summary"]["test/hr@10"] == pytest.approx(log["test"]["hr@10"])
    assert back["summary"]["best_epoch"] == log["best_epoch"]
    info = read_run(params, "tgt", "id")  # the cold-item split, as the run info has it
    cold = info["cold_items"]
    assert all(back["summary"][f"test_seen{b}/{k}"] == pytest.approx(v) for b in cold for k, v in cold[b].items())
    assert sum(back["summary"][f"test_seen{b}/users"] for b in ("0", "1-4", "5+")) == info["counts"]["users"]
    tables = [h for h in back["history"] if "sample_recommendations/_type" in h]  # W&B flattens keys
    assert len(tables) == 1 and tables[0]["sample_recommendations/_type"] == "table-file"
    assert tables[0]["sample_recommendations/nrows"] == 4 * 5  # 4 users x top 5
    # user, history, rank, item, key, title, modality, score, new, hit + the image column
    assert tables[0]["sample_recommendations/ncols"] == 11
    (artifact,) = [a for a in back["artifacts"] if a["type"] == "model"]  # the model folder, as it is on disk
    assert artifact["name"] == "model-tgt-id" and artifact["type"] == "model"
    assert artifact["files"] == ["README.md", "config.json", "model.safetensors"]
    assert artifact["metadata"]["metrics"]["test"]["hr@10"] == pytest.approx(log["test"]["hr@10"])


def test_background_batch_workers_give_the_same_run(world, tmp_path):
    """train.loader_workers builds batches in other processes; the batches (a function of seed, epoch and
    step) and so the whole run stay the same."""
    plain = with_results(world, tmp_path / "plain")
    a = run(plain, transfer_spec(plain, "tgt", "scratch"), progress=False)
    workers = with_results(world, tmp_path / "workers", train={"loader_workers": 2})
    b = run(workers, transfer_spec(workers, "tgt", "scratch"), progress=False)
    assert [e["loss"] for e in a["evaluations"]] == [e["loss"] for e in b["evaluations"]]
    assert a["test"] == b["test"]


def test_compiled_user_encoder_trains_and_keeps_checkpoint_keys(world, tmp_path):
    # no dropout: compiled code draws its dropout masks from another random stream
    no_dropout = {"user_encoder": {"dropout": 0.0}}
    plain = with_results(world, tmp_path / "plain", train={"epochs": 1}, model=no_dropout)
    a = run(plain, transfer_spec(plain, "tgt", "scratch"), progress=False)
    compiled = with_results(world, tmp_path / "compiled", train={"epochs": 1, "compile": True}, model=no_dropout)
    b = run(compiled, transfer_spec(compiled, "tgt", "scratch"), progress=False)
    state = ckpt.read(tmp_path / "compiled" / "models" / "tgt" / "scratch" / "model")["state"]
    assert state.keys() == ckpt.read(tmp_path / "plain" / "models" / "tgt" / "scratch" / "model")["state"].keys()
    assert b["evaluations"][0]["loss"] == pytest.approx(a["evaluations"][0]["loss"], rel=1e-3)  # same maths, fused kernels
