"""params.yaml validation: the default is valid; every mistake is one line naming the key."""
from __future__ import annotations

import copy
import textwrap
from pathlib import Path

import pytest
import yaml

from conftest import ROOT
from transrec import jobs
from transrec import params as P
from transrec.cli import main
from transrec.errors import TransrecError

DEFAULT = yaml.safe_load((ROOT / "params.yaml").read_text())


def check(mutate, expected: str):
    params = copy.deepcopy(DEFAULT)
    mutate(params)
    with pytest.raises(TransrecError) as err:
        P.validate(params, "params.yaml")
    message = str(err.value)
    assert "\n" not in message
    assert expected in message, message


def test_default_params_are_valid_and_plan_every_platform():
    params = copy.deepcopy(DEFAULT)
    assert P.validate(params) == DEFAULT  # validation checks, it does not rewrite
    table = jobs.check(params)  # what `transrec validate` runs: study, sources, the job table
    for step in ("download", "clean", "resize", "tokenize", "split", "cache"):
        assert sorted(dict(j.wildcards)["platform"] for j in table if j.step == step) == sorted(DEFAULT["platforms"])


def test_misspelt_key_is_named_with_a_suggestion():
    check(lambda p: p["data"].update(fitler=p["data"].pop("filter")), "unknown key 'data.fitler' (did you mean 'filter'?)")
    check(lambda p: p["platforms"]["source"]["synthetic"].update(n_user=5), "platforms.source.synthetic.n_user")


def test_wrong_type_and_range_and_enum():
    check(lambda p: p["data"]["filter"].update(min_user_len="five"), "data.filter.min_user_len: expected integer, got 'five'")
    check(lambda p: p["data"]["filter"].update(min_user_len=2), "data.filter.min_user_len: 2 is less than the minimum of 3")
    check(lambda p: p["data"].update(tie_break="time"), "data.tie_break: expected one of item_key | source_row, got 'time'")
    check(lambda p: p["platforms"]["source"].update(adapter="netflix"), "platforms.source.adapter: expected one of")


def test_cross_field_rules():
    check(lambda p: p["platforms"].update(ml={"adapter": "movielens"}), "platforms.ml.location: give a local path or a url")
    check(lambda p: p["platforms"]["source"]["synthetic"].update(history=[9, 3]), "history: min 9 > max 3")


def test_platform_overrides_merge_over_data_defaults():
    params = copy.deepcopy(DEFAULT)
    params["platforms"]["source"]["filter"] = {"k_core": 2}
    cfg = P.platform_config(params, "source")
    assert cfg["filter"] == {"min_user_len": DEFAULT["data"]["filter"]["min_user_len"], "k_core": 2}
    assert cfg["image"] == DEFAULT["data"]["image"] and cfg["name"] == "source"
    with pytest.raises(TransrecError, match="unknown platform 'nope'"):
        P.platform_config(params, "nope")


def test_cli_reports_bad_params_in_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "params.yaml").write_text("seed: [unclosed\n")
    assert main(["validate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("transrec validate: error: params.yaml: line") and "\n" not in err
    (tmp_path / "params.yaml").unlink()
    assert main(["clean", "source"]) == 2
    assert "params file not found" in capsys.readouterr().err


def _write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


def test_a_profile_is_an_overlay_of_what_it_extends(tmp_path):
    """Mappings merge key by key, lists and scalars (null included) replace, `replace:` drops base keys first,
    and a base may extend another: a chain resolves from the root."""
    (tmp_path / "profiles").mkdir()
    _write(tmp_path / "base.yaml", """\
        seed: 0
        study: {source: a, targets: [b, c]}
        platforms: {a: {adapter: synthetic}, b: {adapter: synthetic}}
        synthetic_world: {items: 10}
        model: {d: 64, user_encoder: {layers: 2, heads: 2}}
    """)
    _write(tmp_path / "profiles" / "mid.yaml", """\
        extends: ../base.yaml
        replace: [platforms, synthetic_world]
        platforms: {x: {adapter: movielens}}
        model: {user_encoder: {layers: 4}}
        study: {source: null, targets: [x]}
    """)
    leaf = _write(tmp_path / "profiles" / "leaf.yaml", "extends: mid.yaml\nmodel: {d: 256}\n")
    assert P.read(leaf) == {"seed": 0, "study": {"source": None, "targets": ["x"]},
                            "platforms": {"x": {"adapter": "movielens"}},
                            "model": {"d": 256, "user_encoder": {"layers": 4, "heads": 2}}}


@pytest.mark.parametrize("text, message", [
    ("extends: missing.yaml\n", "extends: .*missing.yaml not found"),
    ("extends: self.yaml\n", "a cycle"),
    ("extends: ../params.yaml\nreplace: [platforms.nope]\n", "replace: 'platforms.nope' is not a key of"),
    ("extends: ../params.yaml\nreplace: platforms\n", "replace: expected a list of dotted keys"),
    ("extends: [a, b]\n", "extends: expected the path of a params file"),
    ("replace: [platforms]\nseed: 1\n", "only an overlay"),
    ("extends: ../params.yaml\ntrain: {epoch: 3}\n", "unknown key 'train.epoch' \\(did you mean 'epochs'"),
])
def test_a_bad_overlay_is_refused_in_one_line(tmp_path, text, message):
    folder = tmp_path / "profiles"
    folder.mkdir()
    (tmp_path / "params.yaml").write_text((ROOT / "params.yaml").read_text())
    path = _write(folder / "self.yaml", text)
    with pytest.raises(TransrecError, match=message) as info:
        P.load(path)
    assert "\n" not in str(info.value)


def test_the_real_data_profiles_train_the_default_recipe():
    """The real-data profiles measure what every user gets: each is an overlay of params.yaml whose model and
    train keys are the few its header explains, nothing copied."""
    profiles = sorted((ROOT / "profiles").glob("*.yaml"))
    for path in profiles:  # each extends params.yaml or another profile (itself checked here)
        raw = yaml.safe_load(path.read_text())
        assert raw.get("extends") in ("../params.yaml", *(p.name for p in profiles if p != path)), path.name
        assert P.load(path)["model"]["user_encoder"]["dropout"] == DEFAULT["model"]["user_encoder"]["dropout"]
        assert len(path.read_text().splitlines()) < 80, f"{path.name}: an overlay holds only what it changes"


def test_a_study_without_a_source_runs_only_scratch_and_id():
    from transrec import jobs, study
    from transrec.train.settings import transfer_spec

    params = P.load(ROOT / "profiles" / "ml100k_peer.yaml")
    study.check(params)
    assert {run for _, run in study.evaluations(params)} == {"scratch", "id", "popularity"}
    spec = transfer_spec(params, "ml100k", "id")
    assert spec.init_from is None and spec.kind == "id"
    assert jobs.job(params, "transfer", target="ml100k", run="scratch").inputs[-1].endswith("cache/ml100k")  # no source
    with pytest.raises(TransrecError, match="finetune starts from a source model, but study.source is null"):
        jobs.job(params, "transfer", target="ml100k", run="finetune")
    params["transfer"]["settings"] = ["scratch", "finetune"]
    with pytest.raises(TransrecError, match="study.source is null, but finetune start"):
        study.check(params)


def test_the_schema_names_exactly_the_settings_the_code_runs():
    """transrec.transfer_settings.REGISTRY is the one list; the schema's two enums follow it."""
    from transrec.params import schema
    from transrec.transfer_settings import transfer_settings

    found = []

    def walk(node):
        if isinstance(node, dict):
            if set(node.get("enum", [])) >= {"scratch", "finetune"}:
                found.append(tuple(node["enum"]))
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(schema())
    # transfer.settings takes every setting; study.scaling.settings those that train (zero_shot does not)
    every = set(transfer_settings())
    assert every == {"scratch", "finetune", "lora", "frozen", "zero_shot", "id"}
    assert sorted(map(set, found), key=len) == [every - {"zero_shot"}, every], found


def test_code_defaults_are_the_params_files():
    """One home per default: the typed configs' defaults are params.yaml's, so a key left out means the same in
    code as in the file."""
    from transrec.model.config import ModelConfig
    from transrec.train.config import TrainConfig

    assert ModelConfig.from_dict(DEFAULT["model"]) == ModelConfig()
    assert TrainConfig.for_setting(DEFAULT["train"], "scratch") == TrainConfig()
    assert TrainConfig.for_setting(DEFAULT["train"], "id").epochs == DEFAULT["train"]["id"]["epochs"]
    assert TrainConfig.for_setting(DEFAULT["train"], "pretrain").epochs == DEFAULT["train"]["pretrain"]["epochs"]


def test_a_thread_count_does_not_rerun_training_but_a_learning_rate_does():
    """The job table's params dependencies of a training job are what its run fingerprint says changes results."""
    params = P.load(ROOT / "params.yaml")
    keys = jobs.job(params, "transfer", target="mixed_target", run="scratch").params
    assert "train.lr" in keys and "train.patience" in keys and "train.id" in keys and "model" in keys
    assert not {"train", "train.num_threads", "train.device", "train.loader_workers"} & set(keys)


def test_validate_show_prints_the_whole_study_a_profile_makes(capsys):
    """`transrec validate --show` writes the merged parameters to stdout (a params file of its own: how a profile
    runs under DVC, which reads params.yaml) and its verdict to stderr."""
    profile = ROOT / "profiles" / "ml100k_lora.yaml"
    assert main(["validate", "--params", str(profile), "--show"]) == 0
    out, err = capsys.readouterr()
    assert yaml.safe_load(out) == P.load(profile) and "extends" not in yaml.safe_load(out)
    assert err.startswith(f"{profile}: valid (2 platforms: ml_a, ml_b;")
