"""params.yaml validation: the default is valid; every mistake is one line naming the key."""
from __future__ import annotations

import copy

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


# What a real-data profile may change in the recipe, and only that (each documented in the profile):
# the peer split's input length is the peer's 50 items; Amazon's 20k-item catalogues train content models
# with sampled softmax, and its 11x more validation users allow a shorter patience and budget.
RECIPE_CHANGES = {
    "ml100k.yaml": {},
    "ml100k_lora.yaml": {("model", "item_tower"): "heads", ("model", "text_encoder", "trainable_blocks"): 1,
                         ("model", "image_encoder", "trainable_blocks"): 1},
    "ml100k_peer.yaml": {("model", "user_encoder", "max_len"): 50},
    "amazon.yaml": {("model", "loss"): "softmax", ("train", "epochs"): 40, ("train", "patience"): 5,
                    ("train", "id", "epochs"): 60},
}


def test_profiles_train_the_default_recipe():
    """The real-data profiles measure what every user gets: their model and train sections are params.yaml's
    but for the changes listed in RECIPE_CHANGES."""
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    for name, changes in RECIPE_CHANGES.items():
        profile = yaml.safe_load((ROOT / "profiles" / name).read_text())
        P.validate(profile, name)
        for path, value in changes.items():
            *parents, key = path
            inner = profile
            for part in parents:
                inner = inner[part]
            assert inner[key] == value, (name, path)
            inner[key] = _get(base, path)
        assert profile["model"] == base["model"], name
        assert profile["train"] == base["train"], name


def _get(tree: dict, path: tuple):
    for part in path:
        tree = tree[part]
    return tree


def test_a_study_without_a_source_runs_only_scratch_and_id():
    from transrec import jobs, study
    from transrec.train.settings import transfer_spec

    params = yaml.safe_load((ROOT / "profiles" / "ml100k_peer.yaml").read_text())
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
    """transrec.train.settings.SETTINGS is the one list; the schema's two enums must follow it."""
    from transrec.params import schema
    from transrec.train.settings import SETTINGS

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
    assert sorted(map(set, found), key=len) == [set(SETTINGS) - {"zero_shot"}, set(SETTINGS)], found
