"""The morec adapter on the real Amazon files (MoRec / IISAN layout), through the real CLI.

The data is read where it lies (../shared/data/amazon/{Instrument,Scientific}) and never copied; the test
skips when it is absent. The expected counts are the ones ../shared/data/README.md states for the files.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from transrec import params as P
from transrec.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "amazon"
pytestmark = pytest.mark.skipif(not (DATA / "Scientific" / "users.tsv").is_file(),
                                reason="Amazon MoRec-layout data not found (../shared/data/amazon)")


def clean(tmp_path: Path, monkeypatch, platforms: dict) -> dict:
    monkeypatch.chdir(tmp_path)
    profile = P.load(REPO / "profiles" / "amazon.yaml")
    params = {"seed": 0, "paths": {"data": "data", "results": "results"}, "data": profile["data"],
              "platforms": platforms}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    out = {}
    for name in platforms:
        assert main(["download", name]) == 0 and main(["clean", name]) == 0
        out[name] = json.loads((tmp_path / "data" / "processed" / name / "stats" / "clean.json").read_text())
    return out


def test_real_amazon_counts_and_shared_reviewers(tmp_path, monkeypatch):
    stats = clean(tmp_path, monkeypatch, {
        "instrument": {"adapter": "morec", "location": {"path": str(DATA / "Instrument")}},
        "scientific": {"adapter": "morec", "location": {"path": str(DATA / "Scientific")}},
        "scientific_alone": {"adapter": "morec", "location": {"path": str(DATA / "Scientific")},
                             "layout": {"exclude_users_of": "../Instrument/users.tsv"}},
    })
    inst, sci, alone = stats["instrument"], stats["scientific"], stats["scientific_alone"]
    # the data README: Instrument 10,000 users, 83,828 interactions, 3,377 repeats, 33,921 items listed,
    # 20,618 of them in a history; Scientific 12,076 users, 85,211 interactions, 3,803 repeats
    assert inst["interactions"]["read"] == 83828 and inst["users"]["distinct"] == 10000
    assert inst["interactions"]["dropped"]["repeat of a user-item pair (dedup: user_item)"] == 3377
    assert inst["items"]["read"] == 33921
    assert sci["interactions"]["read"] == 85211 and sci["users"]["distinct"] == 12076
    assert sci["interactions"]["dropped"]["repeat of a user-item pair (dedup: user_item)"] == 3803
    for s in stats.values():
        assert s["interactions"]["accounted"] and s["interactions"]["quarantined"] == 0
        assert "unknown item id" not in s["interactions"]["dropped"]  # every history item has a title
    # the 249 reviewers present in both are dropped from the target
    assert alone["users"]["distinct"] == 12076 - 249
    assert alone["interactions"]["dropped"]["user also in users.tsv of Instrument (exclude_users_of)"] > 0
