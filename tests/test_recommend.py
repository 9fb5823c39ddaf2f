"""`transrec recommend` and `transrec add-items` on a tiny world: what users see, new items, bad input."""
import json
import shutil
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch

from transrec.cli import main
from transrec.recommend import catalogue, load, top_k

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained(tiny_trained):
    """conftest's tiny models (src pre-trained; scratch and id on tgt) and tgt's items."""
    params, p, models = tiny_trained
    items = pl.read_parquet(Path(params["paths"]["data"]) / "processed" / "tgt" / "items.parquet")
    return params, p, models, items


def keys_of(items: pl.DataFrame, n: int, offset: int = 0) -> list[str]:
    return items["key"].to_list()[offset:offset + n]


def test_recommend_prints_top_k_without_the_history(trained, capsys):
    params, p, models, items = trained
    history = keys_of(items, 3)
    capsys.readouterr()
    assert main(["recommend", "--model", str(models / "tgt" / "scratch"), "--platform", "tgt",
                 "--history", ",".join(history), "--k", "5", "--json", *p]) == 0
    out = json.loads(capsys.readouterr().out)
    recs = out["recommendations"]
    assert [r["rank"] for r in recs] == [1, 2, 3, 4, 5]
    assert all(r["key"] not in history for r in recs)
    scores = [r["score"] for r in recs]
    assert scores == sorted(scores, reverse=True)
    titles = dict(zip(items["key"].to_list(), items["title"].to_list()))
    assert all(r["title"] == titles[r["key"]] for r in recs)
    assert main(["recommend", "--model", str(models / "tgt" / "scratch" / "model" / "model.safetensors"), "--platform", "tgt",
                 "--history", ",".join(history), "--k", "3", *p]) == 0
    table = capsys.readouterr().out
    assert table.startswith("top 3 of ") and recs[0]["key"] in table


def test_recommend_scores_equal_the_models_full_sort_predict(trained):
    params, _, models, items = trained
    net, data, _ = load(params, models / "tgt" / "scratch", "tgt")
    cat = catalogue(net, data, None)
    history = cat.index(keys_of(items, 4, offset=2))
    recs = top_k(net, cat, history, 3)
    hist = torch.tensor([[-1] * (net.cfg.user_encoder.max_len - len(history)) + history])
    with torch.no_grad():
        scores = net.full_sort_predict(hist)[0]
    scores[history] = float("-inf")
    assert [r["item"] for r in recs] == scores.topk(3).indices.tolist()


def test_zero_shot_on_another_platform_and_the_id_model_refuses(trained, capsys):
    params, p, models, _ = trained
    src_items = pl.read_parquet(Path(params["paths"]["data"]) / "processed" / "tgt" / "items.parquet")
    capsys.readouterr()
    assert main(["recommend", "--model", str(models / "src" / "pretrain"), "--platform", "tgt",
                 "--history", ",".join(keys_of(src_items, 2)), "--k", "2", *p]) == 0
    assert "zero-shot: trained on src" in capsys.readouterr().out
    assert main(["recommend", "--model", str(models / "tgt" / "id"), "--platform", "src",
                 "--history", "x", *p]) == 2
    err = capsys.readouterr().err
    assert "ID model trained on tgt" in err and "\n" not in err.strip()
    assert main(["recommend", "--model", str(models / "tgt" / "scratch"), "--platform", "tgt",
                 "--history", "nope-1,nope-2", *p]) == 2
    assert "2 of 2 history keys are not items of this platform: nope-1, nope-2" in capsys.readouterr().err
    assert main(["recommend", "--model", str(models / "tgt" / "missing"), "--platform", "tgt", "--history", "a", *p]) == 2
    assert "not found" in capsys.readouterr().err


def test_added_items_get_the_vector_a_catalogue_item_gets_and_are_recommended(trained, tmp_path, capsys):
    """New items copied from existing ones (same text / image file, new keys) must score exactly like
    their twins: a content model has no per-item parameters, so an item added after training is as
    good as one trained with."""
    params, p, models, items = trained
    model = tmp_path / "model"
    shutil.copytree(models / "tgt" / "scratch" / "model", model)  # a model folder travels on its own
    twins = items.filter(pl.col("modality") != "dropped").head(6)
    new = twins.select(("new-" + pl.col("key")).alias("key"), "title", "text", "image", "modality")
    new.write_csv(tmp_path / "new.csv")
    capsys.readouterr()
    assert main(["add-items", "--model", str(model), "--platform", "tgt", "--items", str(tmp_path / "new.csv"), *p]) == 0
    assert "6 added items on tgt" in capsys.readouterr().out
    stored = pl.read_parquet(model / "added" / "tgt.parquet")
    net, data, _ = load(params, model, "tgt")
    cat = catalogue(net, data, model / "added" / "tgt.parquet")
    assert len(cat.keys) == data.n_items + 6
    for key, vector in zip(stored["key"].to_list(), stored["vector"].to_list()):
        twin = cat.index([key[len("new-"):]])[0]
        assert np.allclose(vector, cat.vectors[twin].numpy(), atol=1e-5), key
    # Recommended: a history of the twins' neighbours ranks each new item right next to its twin.
    history = cat.index(keys_of(items, 3, offset=10))
    recs = top_k(net, cat, history, len(cat.keys))
    rank = {r["key"]: r["rank"] for r in recs}
    for key in stored["key"].to_list():
        if key[len("new-"):] not in [cat.keys[h] for h in history]:
            assert abs(rank[key] - rank[key[len("new-"):]]) == 1, key
    assert main(["recommend", "--model", str(model), "--platform", "tgt", "--history", ",".join(stored["key"][:2]),
                 "--json", *p]) == 0  # new items work as history too
    assert json.loads(capsys.readouterr().out)["recommendations"]


def test_add_items_bad_input(trained, tmp_path, capsys):
    params, p, models, items = trained
    model = tmp_path / "model"
    shutil.copytree(models / "tgt" / "scratch" / "model", model)  # a model folder travels on its own
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    pl.DataFrame({"key": ["a", "b", "c"], "title": ["", "a tagine recipe", "football boots"],
                  "image": [str(tmp_path / "broken.jpg"), str(tmp_path / "broken.jpg"), None]}).write_csv(tmp_path / "new.csv")
    capsys.readouterr()
    assert main(["add-items", "--model", str(model), "--platform", "tgt", "--items", str(tmp_path / "new.csv"), *p]) == 0
    out = capsys.readouterr().out
    assert "3 read, 2 text, 0 image, 0 both, 1 kept as text (image unreadable), 1 dropped; 2 added" in out
    # the same keys again, an existing key, an ID model, a file without keys: one line each
    assert main(["add-items", "--model", str(model), "--platform", "tgt", "--items", str(tmp_path / "new.csv"), *p]) == 2
    assert "already exist on tgt" in capsys.readouterr().err
    pl.DataFrame({"key": [items["key"][0]], "title": ["x"]}).write_csv(tmp_path / "old.csv")
    assert main(["add-items", "--model", str(model), "--platform", "tgt", "--items", str(tmp_path / "old.csv"), *p]) == 2
    assert "1 new item keys already exist" in capsys.readouterr().err
    assert main(["add-items", "--model", str(models / "tgt" / "id"), "--platform", "tgt", "--items",
                 str(tmp_path / "old.csv"), *p]) == 2
    assert "ID model" in capsys.readouterr().err
    (tmp_path / "nokey.csv").write_text("title\nhello\n")
    assert main(["add-items", "--model", str(model), "--platform", "tgt", "--items", str(tmp_path / "nokey.csv"), *p]) == 2
    assert "no 'key' column" in capsys.readouterr().err


def test_held_out_items_come_back_through_add_items(trained, tmp_path):
    """The new-items experiment (benchmarks/new_items.py) on the tiny world: items dropped from training are
    added afterwards and ranked among the trained ones, not pushed to the bottom as popularity would."""
    from transrec.evaluate.new_items import held_out_experiment

    params, _, _, items = trained
    figures = held_out_experiment(params, "tgt", "scratch", 0.2, tmp_path / "work")
    rankable = items.filter(pl.col("modality") != "dropped").height
    assert figures["held_out_items"] == round(0.2 * rankable) and figures["added"] == figures["held_out_items"]
    # training never saw them: dropped from the copy's catalogue and from every training sequence
    copy = tmp_path / "work" / "data" / "processed" / "tgt"
    held = pl.read_parquet(copy / "catalog.parquet").join(
        pl.read_parquet(Path(params["paths"]["data"]) / "processed" / "tgt" / "catalog.parquet"), on="item", suffix="_orig"
    ).filter((pl.col("modality") == "dropped") & (pl.col("modality_orig") != "dropped"))["item"].to_list()
    assert len(held) == figures["held_out_items"]
    trained_items = set(pl.read_parquet(copy / "split.parquet")["train"].explode().drop_nulls().to_list())
    assert not trained_items & set(held)
    users = figures["users_with_held_out_test_item"]
    assert users > 0
    added = figures["results"]["trained without them + add-items"]
    assert added["rankable"] == rankable  # catalogue - held + added
    assert added["hr@10"] * users == pytest.approx(round(added["hr@10"] * users), abs=1e-3)  # a count of users
    assert 0.0 <= added["ndcg@10"] <= added["hr@10"]
    # content vectors place the added items among the trained ones: popularity ranks them last (share 1)
    assert 0.0 < added["mean_rank_share"] < 0.9
    assert figures["results"]["random"]["hr@10"] == pytest.approx(10 / rankable, abs=1e-4)


def test_export_writes_every_users_top_k_without_their_history(trained, tmp_path, capsys):
    """`transrec export`: one row per user x rank, best first, none of the user's own items, the same list
    `recommend` gives for the user's whole sequence; --users picks users; bad input is one line."""
    from transrec.export import output_file

    params, p, models, _ = trained
    params = {**params, "evaluate": {**params["evaluate"], "chunk_users": 7}}  # several chunks
    from transrec.export import export

    out = export(params, models / "tgt" / "scratch", "tgt", k=5, progress=False)
    frame = pl.read_parquet(out["file"])
    assert Path(out["file"]) == output_file(params, models / "tgt" / "scratch", "tgt")
    net, data, _ = load(params, models / "tgt" / "scratch", "tgt")
    cat = catalogue(net, data, None)
    users = pl.read_parquet(data.proc / "users.parquet").sort("user")["key"].to_list()
    assert frame.height == 5 * len(users) and frame["user"].unique().len() == len(users)
    for u in (0, len(users) - 1):
        seq = [*data.train.get(u).tolist(), int(data.valid[u]), int(data.test[u])]
        mine = frame.filter(pl.col("user") == users[u]).sort("rank")
        assert mine["rank"].to_list() == [1, 2, 3, 4, 5] and mine["score"].is_sorted(descending=True)
        assert not set(mine["item"].to_list()) & {cat.keys[i] for i in seq}  # never the user's own items
        assert mine["item"].to_list() == [r["key"] for r in top_k(net, cat, seq, 5)]

    picked = tmp_path / "users.txt"
    picked.write_text(f"{users[2]}\n{users[0]}\n")
    capsys.readouterr()
    assert main(["export", "--model", str(models / "tgt" / "scratch"), "--platform", "tgt", "--k", "3",
                 "--users", str(picked), *p]) == 0
    assert "for 2 users of tgt" in capsys.readouterr().out
    assert sorted(pl.read_parquet(out["file"])["user"].unique().to_list()) == sorted([users[0], users[2]])
    picked.write_text("nobody\n")
    assert main(["export", "--model", str(models / "tgt" / "scratch"), "--platform", "tgt", "--users", str(picked), *p]) == 2
    assert "1 of 1 user keys are not users of tgt: nobody" in capsys.readouterr().err
    assert main(["export", "--model", str(models / "tgt" / "id"), "--platform", "src", *p]) == 2
    err = capsys.readouterr().err
    assert "ID model trained on tgt" in err and "\n" not in err.strip()
