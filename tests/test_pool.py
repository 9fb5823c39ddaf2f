"""Several source platforms in one pre-training (study.source: [a, b]): the pooled platform, the sampling
across its platforms, and the two-source tiny study through both front ends."""
from __future__ import annotations

import copy
import json
import shutil
from types import SimpleNamespace

import numpy as np
import polars as pl
import pytest
import yaml

from conftest import BIN, make_workdir, run, tiny_params
from transrec import jobs, study
from transrec.cli import main
from transrec.data.platform import PlatformData
from transrec.errors import TransrecError
from transrec.train.data import Batches


def _two_sources(params: dict) -> dict:
    """Tiny params with a second source `src2` (other seed, all text, shifted) pooled with `src`."""
    p = copy.deepcopy(params)
    p["platforms"]["src2"] = {"adapter": "synthetic", "role": "source",
                              "synthetic": {"seed": 13, "n_users": 30, "n_items": 30, "text_fraction": 1.0,
                                            "history": [5, 10], "domain_shift": 0.5}}
    p["study"]["source"] = ["src", "src2"]
    return p


@pytest.fixture(scope="module")
def pooled(tiny_world_params, tmp_path_factory):
    """The tiny world's processed `src` with a processed `src2`, pooled by `transrec pool`."""
    from transrec.tiny import build_platforms

    params = _two_sources(tiny_world_params)
    path = tmp_path_factory.mktemp("pool") / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    build_platforms(path, ["src2"])
    assert main(["pool", "--params", str(path)]) == 0
    return params, path


def test_pooled_platform_keeps_every_item_user_and_array_row_of_its_members(pooled):
    params, _ = pooled
    data_root = params["paths"]["data"]
    name = study.source(params)
    assert name == "src+src2" and study.pooled(params) == ["src", "src2"]
    pool = PlatformData(f"{data_root}/processed/{name}", name)
    members = {m: PlatformData(f"{data_root}/processed/{m}", m) for m in ("src", "src2")}
    cat = pl.read_parquet(f"{data_root}/processed/{name}/catalog.parquet")
    assert pool.n_items == sum(d.n_items for d in members.values()) == cat.height
    assert cat["key"].n_unique() == cat.height  # no collision across platforms
    assert pool.platforms == ["src", "src2"] and len(pool.users) == sum(len(d.users) for d in members.values())

    offset = 0
    for m, d in members.items():
        own = cat.filter(pl.col("platform") == m)
        member_cat = pl.read_parquet(f"{data_root}/processed/{m}/catalog.parquet").sort("item")
        assert own["key"].to_list() == [f"{m}:{k}" for k in member_cat["key"].to_list()]
        assert own["item"].to_list() == list(range(offset, offset + d.n_items))
        # the same text tokens and the same pixels at the shifted ids
        assert (np.asarray(pool.text_ids[offset:offset + d.n_items]) == np.asarray(d.text_ids)).all()
        for i in np.flatnonzero(d.image_row >= 0):
            assert (pool.images[pool.image_row[offset + i]] == d.images[d.image_row[i]]).all()
        # every user's sequence is the member's, shifted
        users = np.flatnonzero(pool.user_platform == pool.platforms.index(m))
        assert len(users) == len(d.users)
        row = {key: u for u, key in enumerate(pool.users)}
        for k in range(len(d.users)):
            u = row[f"{m}:{d.users[k]}"]
            assert (pool.train.get(u) == d.train.get(k) + offset).all()
            assert pool.valid[u] == d.valid[k] + offset and pool.test[u] == d.test[k] + offset
        offset += d.n_items

    stats = json.loads((pool.proc / "stats" / "pool.json").read_text())
    assert stats["users"] == sum(s["users"] for s in stats["members"].values())
    assert stats["interactions"] == sum(s["interactions"] for s in stats["members"].values())
    assert pool.tokenizer == members["src"].tokenizer


def test_pooling_members_that_disagree_is_one_line(pooled, tmp_path, capsys):
    params, _ = pooled
    from transrec.data.pool import pool

    data_root = params["paths"]["data"]
    wide = tmp_path / "wide"
    wide.mkdir()
    for f in ("catalog.parquet", "split.parquet", "images.npy", "stats/tokenize.json"):
        (wide / f).parent.mkdir(exist_ok=True)
        shutil.copy(f"{data_root}/processed/src2/{f}", wide / f)
    np.save(wide / "text_ids.npy", np.zeros((30, 20), dtype=np.int32))
    np.save(wide / "text_mask.npy", np.zeros((30, 20), dtype=np.uint8))
    with pytest.raises(TransrecError, match=r"pool: src2 has text length 20 but src has 12"):
        pool(tmp_path / "out", {"src": f"{data_root}/processed/src", "src2": wide})
    with pytest.raises(TransrecError, match="run the data steps for nowhere"):
        pool(tmp_path / "out", {"src": f"{data_root}/processed/src", "nowhere": tmp_path / "absent"})

    bad = copy.deepcopy(params)
    bad["study"]["source"] = ["src", "tgt"]
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(bad))
    assert main(["validate", "--params", str(tmp_path / "bad.yaml")]) == 2
    assert "study.source names 'tgt', which is not a platform with role: source" in capsys.readouterr().err


def _stub(platform_of_user: list[int], length: int = 6) -> SimpleNamespace:
    from transrec.data.platform import Sequences

    n = len(platform_of_user)
    return SimpleNamespace(
        name="stub", n_items=50, pool=np.arange(50), platforms=["a", "b"], user_platform=np.array(platform_of_user),
        train=Sequences(np.arange(0, (n + 1) * length, length), np.arange(n * length) % 50))


def test_balanced_sampling_gives_each_platform_the_same_share_of_an_epoch(tiny_world_params):
    from transrec.model.config import ModelConfig

    cfg = ModelConfig.from_dict({**tiny_world_params["model"], "user_encoder": {
        **tiny_world_params["model"]["user_encoder"], "max_len": 8}})
    data = _stub([0] * 9 + [1] * 3)  # 9 users of `a`, 3 of `b`, one sample each (5 targets <= max_len)
    proportional = Batches(data, cfg, batch_size=4, seed=0)
    users, _, _ = proportional.epoch_samples(0)
    assert sorted(users.tolist()) == list(range(12))
    balanced = Batches(data, cfg, batch_size=4, seed=0, source_sampling="balanced")
    for epoch in range(3):
        users, _, _ = balanced.epoch_samples(epoch)
        assert len(users) == 12  # the epoch keeps its size: 6 samples of each platform
        counts = np.bincount(data.user_platform[users], minlength=2)
        assert counts.tolist() == [6, 6]
        assert sorted(set(users[users >= 9].tolist())) == [9, 10, 11]  # b's users, each exactly twice
        assert np.bincount(users[users >= 9]).tolist()[9:] == [2, 2, 2]
        assert len(set(users[users < 9].tolist())) == 6  # a random 6 of a's 9 users, no repeats
    with pytest.raises(TransrecError, match="train.source_sampling"):
        Batches(data, cfg, batch_size=4, seed=0, source_sampling="uniform")


def test_job_table_pools_the_sources_and_caches_the_pool_not_its_members(tiny_world_params):
    params = _two_sources(tiny_world_params)
    table = {j.name: j for j in jobs.check(params)}
    pool = table["pool-src_src2"]
    assert pool.cmd == "transrec pool" and pool.params == ("study.source",)
    assert {f"data/processed/{m}/split.parquet".replace("data", params["paths"]["data"], 1)
            for m in ("src", "src2")} <= set(pool.inputs)
    assert "cache-src_src2" in table and "cache-src" not in table and "cache-src2" not in table
    pretrain = table["pretrain-pretrain"]
    assert any("/processed/src+src2/" in i for i in pretrain.inputs)
    assert any("/models/src+src2/pretrain/" in o for o in pretrain.outputs)
    finetune = table["transfer-tgt-finetune"]
    assert any("/models/src+src2/pretrain/model" in i for i in finetune.inputs)


@pytest.mark.slow
def test_two_source_study_through_snakemake_and_dvc(tmp_path, tiny_bert_dir):
    """The tiny study pre-trained on two pooled sources (balanced sampling), through both front ends: the same
    pooled data and the same metrics from both, and the pre-training's users are both platforms'."""
    params = _two_sources(tiny_params(tiny_bert_dir))
    params["transfer"]["settings"] = ["scratch", "finetune"]
    params["train"]["source_sampling"] = "balanced"
    snake, dvc = make_workdir(tmp_path / "snake", params), make_workdir(tmp_path / "dvc", params, with_dvc=True)
    planned = run([str(BIN / "snakemake"), "-n", "--quiet", "rules"], snake).stdout
    assert "pool" in planned and "cache" in planned
    run([str(BIN / "snakemake"), "--cores", "2", "--quiet"], snake, timeout=1800)
    run([str(BIN / "dvc"), "repro", "--quiet"], dvc, timeout=1800)
    for work in (snake, dvc):
        info = json.loads((work / "results/run_info/src+src2/pretrain.json").read_text())
        pool = json.loads((work / "data/processed/src+src2/stats/pool.json").read_text())
        assert set(pool["members"]) == {"src", "src2"} and info["counts"]["users"] == pool["users"]  # evaluated on all
        assert (work / "results/metrics/tgt/finetune.json").is_file()
        config = json.loads((work / "results/models/tgt/finetune/model/config.json").read_text())
        assert "src+src2" in json.dumps(config)  # the fine-tuned model names the pooled pre-training it started from
    for run_file in ("src+src2/pretrain", "tgt/finetune", "tgt/scratch"):
        a = json.loads((snake / f"results/metrics/{run_file}.json").read_text())["test"]
        b = json.loads((dvc / f"results/metrics/{run_file}.json").read_text())["test"]
        assert a == pytest.approx(b, abs=1e-6), run_file
    again = run([str(BIN / "snakemake"), "--cores", "2"], snake)
    assert "Nothing to be done" in again.stdout + again.stderr
