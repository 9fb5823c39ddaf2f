"""Model folders (issue 23): the hub layout (safetensors + config.json + model card), nothing executed on load,
every bad folder one line, old pickled checkpoints converted with the weights-only reader, hub names."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import torch
from huggingface_hub import ModelCard
from safetensors import safe_open

from transrec.cli import main
from transrec.model import checkpoint as ckpt
from transrec.model.config import ModelConfig
from transrec.tensor_file import load_tree, save_tree

ROOT = Path(__file__).resolve().parents[1]


class Payload:
    """What a hostile pickle carries: unpickling calls os.system."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture(scope="module")
def trained(tiny_trained):
    params, p, models = tiny_trained
    keys = pl.read_parquet(Path(params["paths"]["data"]) / "processed" / "tgt" / "catalog.parquet") \
        .filter(pl.col("modality") != "dropped")["key"].to_list()
    return params, p, models, keys


def recommend(p, model, keys, capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    code = main(["recommend", "--model", str(model), "--platform", "tgt", "--history", ",".join(keys[:2]), "--json", *p])
    out = capsys.readouterr()
    return code, out.out, out.err.strip()


def test_the_folder_is_the_hubs_layout_with_a_model_card(trained):
    params, _, models, _ = trained
    folder = models / "tgt" / "scratch" / "model"
    assert sorted(f.name for f in folder.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    config = json.loads((folder / "config.json").read_text())
    log = json.loads((models / "tgt" / "scratch" / "train_log.json").read_text())
    metrics = json.loads((Path(params["paths"]["results"]) / "metrics" / "tgt" / "scratch.json").read_text())
    assert config["format"] == "transrec-model" and config["format_version"] == 1 and config["kind"] == "content"
    assert config["platform"] == "tgt" and config["setting"] == "scratch" and config["step"] == log["best_step"]
    assert config["metrics"]["test"] == metrics["test"] and config["trainable_parameters"] == log["trainable_parameters"]
    assert config["catalogue"] == ckpt.catalogue_hash(Path(params["paths"]["data"]) / "processed" / "tgt")
    assert config["encoders"]["identity"] == ckpt.encoder_identity(ModelConfig.from_dict(config["model_config"]))
    assert config["encoders"]["weight_files"]["image"]  # Lite0's pretrained file, hashed
    with safe_open(folder / "model.safetensors", "pt") as fh:  # plain safetensors: any reader can take the weights
        assert fh.metadata()["format"] == "pt" and json.loads(fh.metadata()["transrec"])["step"] == config["step"]
        assert set(fh.keys()) == set(ckpt.read(folder)["state"])
        assert not any(k.startswith("items.text.bottom") for k in fh.keys())  # frozen bottoms are never stored
    card = ModelCard.load(folder / "README.md")
    assert card.data.library_name == "transrec" and "setting-scratch" in card.data.tags
    text = card.text
    assert f"| test | {metrics['test']['hr@5']:.4f} |" in text  # the metrics table, from the metrics file
    for section in ("## Data", "## Protocol and metrics", "## How to load", "## Intended use and limits"):
        assert section in text
    assert f"{config['trainable_parameters']:,} parameters trained" in text


def test_a_pickle_is_never_executed(trained, tmp_path, capsys):
    """The report's attack: a best.pt whose unpickling runs a command, in a run folder and named directly,
    and handed to convert-model. Every time: one line, and the command never ran."""
    _, p, _, keys = trained
    marker = tmp_path / "PWNED"
    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": 1, "state": {}, "x": Payload(marker)}, run / "best.pt")
    for model in (run, run / "best.pt"):
        code, _, err = recommend(p, model, keys, capsys)
        assert code == 2 and "pickled checkpoint of an older transrec: not loaded" in err and "\n" not in err
    assert main(["convert-model", str(run / "best.pt"), str(tmp_path / "out"), *p]) == 2
    err = capsys.readouterr().err.strip()
    assert "not converted, its pickle holds more than weights" in err and "\n" not in err
    assert not marker.exists() and not (tmp_path / "out" / "config.json").exists()


def _break(kind: str, folder: Path) -> str:
    """Damage a copied model folder one way; return the one line expected."""
    config_path, weights = folder / "config.json", folder / "model.safetensors"
    config = json.loads(config_path.read_text())
    if kind == "truncated weights":
        weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
        return "cannot be read (truncated or corrupt?)"
    if kind == "unknown format version":
        config_path.write_text(json.dumps({**config, "format_version": 2}))
        return "format_version 2; this transrec reads format_version 1 (written by a newer transrec: upgrade)"
    if kind == "not a transrec config":
        config_path.write_text(json.dumps({"architectures": ["BertModel"]}))
        return "is not a transrec model (format None, expected 'transrec-model')"
    if kind == "config not JSON":
        config_path.write_text("{ not json")
        return "config.json is not valid JSON"
    if kind == "missing config":
        config_path.unlink()
        return "config.json is missing (not a finished transrec model folder)"
    if kind == "missing weights":
        weights.unlink()
        return "model.safetensors is missing"
    if kind == "config of another save":
        config_path.write_text(json.dumps({**config, "step": config["step"] + 1}))
        return "come from different saves"
    if kind == "other encoder weights":
        files = config["encoders"]["weight_files"]
        config_path.write_text(json.dumps({**config, "encoders": {**config["encoders"],
                                                                  "weight_files": {**files, "image": "0" * 16}}}))
        return "trained with other image encoder weights than the local ones"
    if kind == "ID model of another catalogue":
        config_path.write_text(json.dumps({**config, "catalogue": "0" * 16}))
        return "is an ID model of another tgt catalogue"
    raise AssertionError(kind)


BAD = ["truncated weights", "unknown format version", "not a transrec config", "config not JSON", "missing config",
       "missing weights", "config of another save", "other encoder weights", "ID model of another catalogue"]


@pytest.mark.parametrize("kind", BAD)
def test_a_bad_model_folder_is_one_line(trained, tmp_path, capsys, kind):
    _, p, models, keys = trained
    folder = tmp_path / "model"
    shutil.copytree(models / "tgt" / ("id" if kind.startswith("ID") else "scratch") / "model", folder)
    assert recommend(p, folder, keys, capsys)[0] == 0  # intact, the copy works
    expected = _break(kind, folder)
    code, _, err = recommend(p, folder, keys, capsys)
    assert code == 2 and expected in err and "\n" not in err and "Traceback" not in err, err


def test_an_old_best_pt_is_refused_with_the_fix_and_converts_to_the_same_model(trained, tmp_path, capsys):
    params, p, models, keys = trained
    payload = ckpt.read(models / "tgt" / "scratch")
    old = {"format": 1, **{k: payload[k] for k in ("kind", "model_config", "n_items", "image_size", "items_frozen",
                                                   "platform", "setting", "step", "epoch", "valid")},
           "state": payload["state"]}
    torch.save(old, tmp_path / "best.pt")  # what transrec wrote before the model folder
    code, _, err = recommend(p, tmp_path / "best.pt", keys, capsys)
    assert code == 2 and f"convert it once with `transrec convert-model {tmp_path / 'best.pt'} OUT_FOLDER`" in err
    assert main(["convert-model", str(tmp_path / "best.pt"), str(tmp_path / "converted"), *p]) == 0
    capsys.readouterr()
    original = json.loads(recommend(p, models / "tgt" / "scratch", keys, capsys)[1])["recommendations"]
    code, out, _ = recommend(p, tmp_path / "converted", keys, capsys)
    assert code == 0 and json.loads(out)["recommendations"] == original
    config = json.loads((tmp_path / "converted" / "config.json").read_text())
    assert config["converted_from"] == str(tmp_path / "best.pt") and config["catalogue"] == payload["catalogue"]
    assert (tmp_path / "converted" / "README.md").is_file()
    assert main(["convert-model", str(tmp_path / "best.pt"), str(tmp_path / "converted"), *p]) == 2  # never overwrites


def test_a_hub_name_loads_from_the_hub_cache(trained, tmp_path, capsys):
    """`--model hf:owner/name`: huggingface_hub's snapshot of the folder. Offline (HF_HUB_OFFLINE=1) it reads the
    hub cache, laid out here as the hub client lays it out after a download; an unknown name is one line."""
    _, p, models, keys = trained
    revision = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--someone--tiny-transrec"
    shutil.copytree(models / "tgt" / "scratch" / "model", repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1", "WANDB_MODE": "disabled"}

    def cli(model: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "transrec.cli", "recommend", "--model", model, "--platform", "tgt",
                               "--history", ",".join(keys[:2]), "--json", *p], env=env, capture_output=True, text=True)

    local = json.loads(recommend(p, models / "tgt" / "scratch", keys, capsys)[1])["recommendations"]
    hub = cli("hf:someone/tiny-transrec")
    assert hub.returncode == 0, hub.stderr
    assert json.loads(hub.stdout)["recommendations"] == local
    missing = cli("hf:someone/absent")
    assert missing.returncode == 2 and "hf:someone/absent: cannot get it from the hub" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1


def test_push_model_without_the_network_is_one_line(trained, capsys):
    _, p, models, _ = trained
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run([sys.executable, "-m", "transrec.cli", "push-model", str(models / "tgt" / "scratch"),
                           "someone/tiny-transrec"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.startswith("transrec push-model: error: push-model someone/tiny-transrec")
    assert len(proc.stderr.strip().splitlines()) == 1


def test_tensor_files_round_trip_what_a_resume_state_holds(tmp_path):
    tree = {"model": {"w": torch.arange(6.0).reshape(2, 3).t()},  # a strided view is stored as its values
            "optimizer": {"state": {0: {"step": torch.tensor(3.0), "exp_avg": torch.ones(2)}},
                          "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.999), "params": [0]}]},
            "rng": {"torch": torch.get_rng_state()}, "state": {"best": float("-inf"), "log": [], "wandb_id": None}}
    save_tree(tmp_path / "s.safetensors", tree)
    back, _ = load_tree(tmp_path / "s.safetensors")
    assert torch.equal(back["model"]["w"], tree["model"]["w"]) and torch.equal(back["rng"]["torch"], tree["rng"]["torch"])
    assert list(back["optimizer"]["state"]) == [0] and torch.equal(back["optimizer"]["state"][0]["step"], torch.tensor(3.0))
    assert back["optimizer"]["param_groups"][0]["betas"] == [0.9, 0.999] and back["state"]["best"] == float("-inf")
    (tmp_path / "cut.safetensors").write_bytes((tmp_path / "s.safetensors").read_bytes()[:-10])
    with pytest.raises(Exception, match="truncated or corrupt"):
        load_tree(tmp_path / "cut.safetensors")


def test_no_reader_unpickles():
    """The only torch.load left is convert-model's, with the weights-only reader; nothing imports pickle."""
    hits = [f"{path.relative_to(ROOT)}: {line.strip()}" for path in (ROOT / "src").rglob("*.py")
            for line in path.read_text().splitlines() if "torch.load(" in line or "import pickle" in line]
    assert all("weights_only=True" in h for h in hits), hits
