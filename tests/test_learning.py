"""Training learns, through the real loop (`transrec.train.loop.run`: batches, loss, CpuAdamW, validation,
early stopping, best checkpoint, test), with a negative control: the same run with a broken optimizer step
(learning rate 0) must fail the same checks, so the checks can tell learning from not learning.

The platform is a tiny synthetic one with enough users for the checks to be above noise (298 users, 80
items after cleaning). The run is the SASRec-ID model: the tiny world's encoders are a randomly initialised
2-layer BERT and 16-px images, so a content model has nothing to learn items from beyond what popularity
already knows; an ID model learns the world's topic transitions from the sequences alone. Measured when
written (seed 0): validation NDCG@10 0.271 -> best 0.356 over 12 evaluations, test 0.373 against popularity's
0.279; with lr 0 the curve is flat at 0.076 and the test NDCG@10 is 0.081."""
from __future__ import annotations

import pytest
import yaml

from conftest import ROOT
from transrec.tiny import build_platforms, tiny_params, with_results
from transrec.train.evaluation import evaluate
from transrec.train.loop import run
from transrec.train.settings import transfer_spec

RISE = 0.05       # best validation NDCG@10 at least this far above the first evaluation's
OVER_POP = 0.05   # test NDCG@10 at least this far above popularity's


@pytest.fixture(scope="module")
def platform(tiny_bert_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("learning")
    params = tiny_params(root, yaml.safe_load((ROOT / "params.yaml").read_text()), tiny_bert_dir)
    params["platforms"]["tgt"]["synthetic"].update({"n_users": 300, "n_items": 80, "history": [8, 20]})
    (root / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    build_platforms(root / "params.yaml", names=("tgt",))
    return params, root


def _learns(params: dict, results, **train) -> tuple[bool, str]:
    p = with_results(params, results, train={"cache": False, "patience": 100, "eval_every": 50, "max_steps": 600,
                                             "id": {"epochs": 100}, **train})
    log = run(p, transfer_spec(p, "tgt", "id"), progress=False)
    curve = [e["valid"]["ndcg@10"] for e in log["evaluations"]]
    popularity = evaluate(p, "tgt", "popularity", progress=False)["test"]["ndcg@10"]
    rises = max(curve) >= curve[0] + RISE
    beats = log["test"]["ndcg@10"] >= popularity + OVER_POP
    return rises and beats, (f"valid ndcg@10 {curve[0]:.3f} -> best {max(curve):.3f} over {len(curve)} evaluations; "
                             f"test {log['test']['ndcg@10']:.3f} vs popularity {popularity:.3f}")


def test_training_learns_and_a_broken_optimizer_step_does_not(platform, tmp_path):
    params, _ = platform
    learned, measured = _learns(params, tmp_path / "trained")
    assert learned, measured
    broken, measured_broken = _learns(params, tmp_path / "lr0", lr=0.0, encoder_lr=0.0)
    assert not broken, measured_broken  # the negative control: the checks above are not met by chance
    print(f"trained: {measured}\nlr 0: {measured_broken}")


def _run(params: dict, results, **train) -> dict:
    p = with_results(params, results, train={"cache": False, "min_steps": 0, **train})
    return run(p, transfer_spec(p, "tgt", "id"), progress=False)


def test_a_run_says_why_it_stopped_and_where_its_best_step_lies(platform, tmp_path):
    """train_log / the model's config / run_info carry the stop reason, the budget and the best step's share of
    it; `still_improving` is the flag the report shows (ended at the budget, best step in its last 10%)."""
    import json

    params, _ = platform
    budget = _run(params, tmp_path / "budget", max_steps=60, eval_every=10, patience=100)
    record = budget["training"]
    curve = {e["step"]: e["valid"]["ndcg@10"] for e in budget["evaluations"]}
    assert record["stop_reason"] == "step budget" and record["steps"] == record["budget_steps"] == 60
    assert record["best_step"] == max(curve, key=lambda s: (curve[s], -s))  # the first step with the best score
    assert record["best_share"] == pytest.approx(record["best_step"] / 60, abs=1e-4)
    assert record["still_improving"] == (record["best_step"] > 54)
    info = json.loads((tmp_path / "budget" / "run_info" / "tgt" / "id.json").read_text())
    assert info["training"] == record

    early = _run(params, tmp_path / "early", max_steps=400, eval_every=5, patience=1)
    assert early["training"]["stop_reason"] == "patience" and early["steps"] < 400
    assert not early["training"]["still_improving"]


def test_min_steps_stretches_the_budget_and_holds_off_early_stopping(platform, tmp_path):
    """A run whose epochs hold fewer steps than train.min_steps trains at least that many, and patience cannot stop it
    before them: the rule that keeps a 10% share of a small target (an epoch of one step) from stopping on noise."""
    params, _ = platform
    one_epoch = _run(params, tmp_path / "epoch", eval_every=5, patience=100, id={"epochs": 1})["training"]
    assert one_epoch["stop_reason"] == "epoch budget" and one_epoch["budget_steps"] < 100
    log = _run(params, tmp_path / "min", min_steps=100, eval_every=5, patience=1, id={"epochs": 1})
    assert log["training"]["budget_steps"] >= 100  # whole epochs until min_steps is reached
    assert log["steps"] >= 100  # patience 1 stops at the first evaluation without a better score, once past min_steps


def test_the_end_of_a_run_ranks_validation_only_if_this_process_did_not(platform, tmp_path, monkeypatch):
    """finish reuses the best checkpoint's validation ranking made during training (one ranking fewer per run: an
    hour at 2M users) and reports the same numbers `transrec evaluate` computes from the saved model."""
    from transrec.train import loop

    params, _ = platform
    calls = []
    real = loop.Run.evaluate
    monkeypatch.setattr(loop.Run, "evaluate",
                        lambda self, split, progress=True: calls.append(split) or real(self, split, progress))
    log = _run(params, tmp_path / "once", max_steps=30, eval_every=10, patience=100)
    assert calls.count("valid") == len(log["evaluations"]) == 3 and calls.count("test") == 1
    p = with_results(params, tmp_path / "once")
    again = evaluate(p, "tgt", "id", progress=False)
    assert again["valid"] == pytest.approx(log["valid"], abs=1e-6) and again["test"] == pytest.approx(log["test"], abs=1e-6)
