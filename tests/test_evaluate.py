"""End to end through `transrec.cli.main`: cache -> pretrain -> transfer (every setting) -> evaluate."""
import json
from pathlib import Path

import pytest
import torch
import yaml

from transrec.cli import main
from transrec.evaluate.document import read_run
from transrec.evaluate.metrics import metrics_from_ranks
from transrec.evaluate.per_user import read_ranks
from transrec.model import checkpoint as ckpt
from transrec.tiny import with_results

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = ("scratch", "finetune", "lora", "frozen", "zero_shot", "id")


@pytest.fixture(scope="module")
def study(tiny_world_params, tmp_path_factory):
    world = tiny_world_params
    root = tmp_path_factory.mktemp("study")
    params = with_results(world, root / "results", root / "params.yaml")
    p = ["--params", str(root / "params.yaml")]
    codes = {}
    for platform in ("src", "tgt"):
        codes[f"cache {platform}"] = main(["cache", platform, *p])
    codes["pretrain"] = main(["pretrain", *p])
    for setting in SETTINGS:
        codes[f"transfer {setting}"] = main(["transfer", "tgt", setting, *p])
    written = {s: read_run(params, "tgt", s) for s in SETTINGS}  # by the training run
    written["pretrain"] = read_run(params, "src", "pretrain")
    for setting in (*SETTINGS, "popularity"):
        codes[f"evaluate {setting}"] = main(["evaluate", "tgt", setting, *p])
    codes["evaluate pretrain"] = main(["evaluate", "src", "pretrain", *p])
    return params, root, codes, written


def test_every_step_succeeds_and_writes_its_outputs(study):
    params, root, codes, _ = study
    assert all(code == 0 for code in codes.values()), codes
    results = Path(params["paths"]["results"])
    for setting in SETTINGS:
        run_dir = results / "models" / "tgt" / setting
        assert (run_dir / "model" / "config.json").is_file() and (run_dir / "train_log.json").is_file()
        assert (run_dir / "resume.safetensors").is_file() == (setting != "zero_shot")
    for setting in (*SETTINGS, "popularity"):
        metrics = json.loads((results / "metrics" / "tgt" / f"{setting}.json").read_text())
        assert set(metrics) == {"test", "valid", "wall_s"}  # numbers only: `dvc metrics show` is a table
        doc = read_run(params, "tgt", setting)
        assert doc["platform"] == "tgt" and doc["setting"] == setting and doc["test"] == metrics["test"]
        assert set(doc["test"]) == {"hr@5", "ndcg@5", "hr@10", "ndcg@10", "hr@20", "ndcg@20", "mrr"}
        assert all(0.0 <= v <= 1.0 for v in [*doc["test"].values(), *doc["valid"].values()])
        assert doc["test"]["hr@5"] <= doc["test"]["hr@10"] <= doc["test"]["hr@20"]
        assert doc["protocol"]["ties"] == "pessimistic" and doc["protocol"]["mask_history"] is True
        assert doc["counts"]["users"] > 0
        assert doc["counts"]["items_ranked"] + doc["counts"]["dropped_items"] == doc["counts"]["items"]
        # the per-user ranks in run info give back the test metrics; the cold-item buckets hold every user once
        ranks = read_ranks(doc["test_ranks"], setting)
        assert len(ranks) == doc["counts"]["users"]
        assert metrics_from_ranks(ranks, doc["protocol"]["ks"]) == pytest.approx(doc["test"], abs=1e-6)
        assert sum(b["users"] for b in doc["cold_items"].values()) == doc["counts"]["users"]
        assert all(b["ndcg@10"] <= b["hr@10"] for b in doc["cold_items"].values() if b["users"])
    # every run of a platform ranks the same test users in the same order: what the report pairs
    assert len({read_run(params, "tgt", s)["test_ranks"]["targets_sha256"] for s in (*SETTINGS, "popularity")}) == 1
    assert read_run(params, "src", "pretrain")["setting"] == "pretrain"


def test_evaluate_reproduces_the_metrics_the_training_run_wrote(study):
    params, _, _, written = study
    results = Path(params["paths"]["results"])
    for setting in (*SETTINGS, "pretrain"):
        platform = "src" if setting == "pretrain" else "tgt"
        log = json.loads((results / "models" / platform / setting / "train_log.json").read_text())
        doc = read_run(params, platform, setting)  # `transrec evaluate`
        assert written[setting]["test"] == pytest.approx(log["test"], abs=1e-9), setting
        assert doc["test"] == pytest.approx(written[setting]["test"], abs=1e-6), setting
        assert doc["valid"] == pytest.approx(written[setting]["valid"], abs=1e-6), setting
        assert doc["counts"] == written[setting]["counts"] and doc["protocol"] == written[setting]["protocol"]


def test_settings_start_from_what_they_should(study):
    params, _, _, _ = study
    models = Path(params["paths"]["results"]) / "models"
    source = ckpt.read(models / "src" / "pretrain" / "model")["state"]
    zero = ckpt.read(models / "tgt" / "zero_shot" / "model")
    assert all(torch.equal(zero["state"][k], v) for k, v in source.items())  # no target training at all
    frozen = ckpt.read(models / "tgt" / "frozen" / "model")
    assert frozen["items_frozen"]
    assert all(torch.equal(frozen["state"][k], v) for k, v in source.items() if k.startswith("items."))  # fixed
    assert any(not torch.equal(frozen["state"][k], v) for k, v in source.items() if k.startswith("user."))
    for setting, loaded in (("finetune", True), ("lora", True), ("frozen", True), ("zero_shot", True), ("scratch", False)):
        log = json.loads((models / "tgt" / setting / "train_log.json").read_text())
        assert (log["load_report"] is not None) == loaded
        if loaded:
            assert log["load_report"]["counts"]["loaded"] > 0 and log["load_report"]["counts"]["unused"] == 0
            assert all(r.startswith("frozen encoder bottom") for r in log["load_report"]["not_loaded"].values())
    assert ckpt.read(models / "tgt" / "id" / "model")["kind"] == "id"


def test_lora_trains_adapters_and_saves_a_plain_model(study):
    params, _, _, _ = study
    models = Path(params["paths"]["results"]) / "models"
    source = ckpt.read(models / "src" / "pretrain" / "model")["state"]
    lora, finetune = (ckpt.read(models / "tgt" / s / "model")["state"] for s in ("lora", "finetune"))
    assert set(lora) == set(finetune)  # adapters merged: the plain architecture, for evaluate/recommend/export
    top = [k for k in source if k.startswith("items.text.top.")]
    adapted = [k for k in top if k.endswith(("query.weight", "value.weight"))]
    assert adapted and all(not torch.equal(lora[k], source[k]) for k in adapted)  # W + B A
    assert all(torch.equal(lora[k], source[k]) for k in top if k not in adapted)  # the block's own weights fixed
    assert any(not torch.equal(finetune[k], source[k]) for k in top if k not in adapted)  # finetune trains them
    logs = {s: json.loads((models / "tgt" / s / "train_log.json").read_text()) for s in ("lora", "finetune")}
    assert 0 < logs["lora"]["trainable_parameters"] < logs["finetune"]["trainable_parameters"]


def test_user_errors_are_one_line(study, tmp_path, capsys):
    params, root, _, _ = study
    capsys.readouterr()
    bad = json.loads(json.dumps(params))
    bad["model"]["user_encoder"]["layer"] = 2
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert main(["pretrain", "--params", str(tmp_path / "bad.yaml")]) == 2
    err = capsys.readouterr().err.strip()
    assert "unknown key 'model.user_encoder.layer' (did you mean 'layers'?)" in err and "\n" not in err
    none = json.loads(json.dumps(params))
    none["study"]["source"] = None
    (tmp_path / "none_source.yaml").write_text(yaml.safe_dump(none))
    assert main(["pretrain", "--params", str(tmp_path / "none_source.yaml")]) == 2
    assert "pre-training needs study.source" in capsys.readouterr().err
    with_results(params, tmp_path / "empty", tmp_path / "none.yaml")
    assert main(["evaluate", "tgt", "finetune", "--params", str(tmp_path / "none.yaml")]) == 2
    assert "run `transrec transfer tgt finetune` first" in capsys.readouterr().err
    assert main(["transfer", "tgt", "finetune", "--params", str(tmp_path / "none.yaml")]) == 2
    assert "run `transrec pretrain` first" in capsys.readouterr().err
    assert main(["transfer", "src", "scratch", "--params", str(tmp_path / "none.yaml")]) == 2
    assert "src is the source platform" in capsys.readouterr().err


def test_variants_train_on_a_share_of_users_and_start_from_their_source_model(study, capsys):
    params, root, _, _ = study
    p = ["--params", str(root / "params.yaml")]
    assert main(["pretrain", "--variant", "src0.5", *p]) == 0
    assert main(["transfer", "tgt", "finetune@src0.5", *p]) == 0
    assert main(["transfer", "tgt", "scratch@tgt0.5-seed1", *p]) == 0
    results = Path(params["paths"]["results"])
    full = json.loads((results / "models" / "src" / "pretrain" / "train_log.json").read_text())
    half = json.loads((results / "models" / "src" / "pretrain@src0.5" / "train_log.json").read_text())
    assert half["run"] == "pretrain@src0.5" and half["user_fraction"] == 0.5
    assert 0.3 * full["trained_users"] <= half["trained_users"] <= 0.7 * full["trained_users"]
    finetune = json.loads((results / "models" / "tgt" / "finetune@src0.5" / "train_log.json").read_text())
    assert finetune["init_from"].endswith("pretrain@src0.5/model")
    scaled = json.loads((results / "models" / "tgt" / "scratch@tgt0.5-seed1" / "train_log.json").read_text())
    scratch = json.loads((results / "models" / "tgt" / "scratch" / "train_log.json").read_text())
    assert scaled["seed"] == params["train"]["seed"] + 1 and scaled["trained_users"] < scratch["trained_users"]
    doc = read_run(params, "tgt", "scratch@tgt0.5-seed1")
    assert doc["run"] == "scratch@tgt0.5-seed1" and doc["setting"] == "scratch"
    assert doc["counts"]["users"] == read_run(params, "tgt", "scratch")["counts"]["users"]
    capsys.readouterr()
    assert main(["transfer", "tgt", "scratch@src0.5", *p]) == 2
    assert "src<f> only applies to settings that start from the source model" in capsys.readouterr().err
    assert main(["transfer", "tgt", "finetune@tgt0.50", *p]) == 2
    assert "write 'tgt0.5'" in capsys.readouterr().err
    assert main(["transfer", "tgt", "finetune@src0.25", *p]) == 2
    assert "run `transrec pretrain --variant src0.25` first" in capsys.readouterr().err
