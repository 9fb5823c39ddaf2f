"""Bad input: every case ends in one clear error line (exit 2) or in a counted, reported drop.

Each test builds a tiny platform in the generic csv layout under tmp_path, writes a params.yaml
beside it and runs the real steps through `transrec.cli.main`, then checks hand-computed counts.
"""
from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import yaml
from PIL import Image

from transrec.cli import main
from transrec.errors import TransrecError

ROOT = Path(__file__).resolve().parents[1]
DATA_SECTION = yaml.safe_load((ROOT / "params.yaml").read_text())["data"]
STEPS = ("download", "clean", "resize", "tokenize", "split")


# ----------------------------------------------------------------------------------------- helpers

def jpeg(color=(200, 40, 40), size=24) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), color).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_platform(tmp_path: Path, interactions: list[str], items: list[str], images: dict[str, bytes] | None = None,
                  item_header: str = "item_id,title") -> Path:
    """A csv-layout folder: interactions.csv and items.csv from raw lines, images/<key>.jpg from bytes."""
    src = tmp_path / "src"
    src.mkdir()
    (src / "interactions.csv").write_text("user_id,item_id,timestamp\n" + "\n".join(interactions) + "\n")
    (src / "items.csv").write_text(item_header + "\n" + "\n".join(items) + "\n")
    if images is not None:
        (src / "images").mkdir()
        for key, data in images.items():
            (src / "images" / f"{key}.jpg").write_bytes(data)
    return src


def data_section(**overrides) -> dict:
    data = copy.deepcopy(DATA_SECTION)
    data["image"]["size"] = 16
    data["filter"]["min_user_len"] = 3
    data["text"] = {"tokenizer": "minilm", "max_len": 16}
    for key, value in overrides.items():
        data[key] = value
    return data


def write_params(tmp_path: Path, src: Path, data: dict | None = None, layout: dict | None = None) -> Path:
    platform = {"adapter": "csv", "location": {"path": str(src)}}
    if layout:
        platform["layout"] = layout
    params = {"seed": 0, "paths": {"data": "data", "results": "results"},
              "data": data if data is not None else data_section(), "platforms": {"p": platform}}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run(*steps: str) -> None:
    for step in steps:
        assert main([step, "p"]) == 0, step


def proc_dir(tmp_path: Path) -> Path:
    return tmp_path / "data" / "processed" / "p"


def stats(tmp_path: Path) -> dict:
    return json.loads((proc_dir(tmp_path) / "stats.json").read_text())


def sequences(tmp_path: Path) -> dict[str, list[str]]:
    """user key -> full ordered sequence of item keys (train + valid + test), from split.parquet."""
    proc = proc_dir(tmp_path)
    item_key = dict(pl.read_parquet(proc / "catalog.parquet").select("item", "key").iter_rows())
    user_key = dict(pl.read_parquet(proc / "users.parquet").iter_rows())
    return {user_key[u]: [item_key[i] for i in train + [valid, test]]
            for u, train, valid, test in pl.read_parquet(proc / "split.parquet").iter_rows()}


def catalog(tmp_path: Path) -> dict[str, dict]:
    return {r["key"]: r for r in pl.read_parquet(proc_dir(tmp_path) / "catalog.parquet").iter_rows(named=True)}


def one_error_line(capsys, step: str) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.strip("\n").split("\n")
    assert len(lines) == 1, err
    assert lines[0].startswith(f"transrec {step}: error: "), err
    return lines[0]


def leftovers(folder: Path) -> list[str]:
    """Temp files atomic_path would leave behind if it failed to clean up."""
    return sorted(p.name for p in folder.rglob("*") if p.name.startswith(".") and ".tmp" in p.name)


def assert_accounted(clean: dict) -> None:
    i = clean["interactions"]
    assert i["accounted"] is True
    assert i["read"] == i["kept"] + sum(i["dropped"].values()) + i["quarantined"]


@pytest.fixture
def work(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


# ------------------------------------------------------------------------------------------- cases

def test_malformed_rows_are_quarantined_with_reasons(work, capsys):
    src = make_platform(work, [
        "u1,1,100", "u1,2,200", "u1,3,300",
        "u2,1,100", "u2,2,200", "u2,3,300",
        "u3,1,100,extra",      # 4 fields
        "u3,2",                # 2 fields
        "u3,3,yesterday",      # non-numeric timestamp
        ",1,400",              # empty user id
        "u3,,400",             # empty item id
    ], ["1,One", "2,Two", "3,Three"])
    write_params(work, src)
    run(*STEPS)
    clean = stats(work)["clean"]["interactions"]
    assert clean["read"] == 11 and clean["kept"] == 6 and clean["dropped"] == {} and clean["quarantined"] == 5
    assert clean["quarantine_reasons"] == {"bad timestamp": 1, "empty item id": 1, "empty user id": 1,
                                           "expected 3 fields, got 2": 1, "expected 3 fields, got 4": 1}
    assert_accounted(stats(work)["clean"])
    q = pl.read_parquet(proc_dir(work) / "quarantine.parquet")
    assert q.height == 5 and set(q["table"]) == {"interactions"}
    by_reason = dict(zip(q["reason"], q["raw"]))
    assert "extra" in by_reason["expected 3 fields, got 4"] and "yesterday" in by_reason["bad timestamp"]
    # the csv reader knows the line (header = line 1)
    assert dict(zip(q["reason"], q["line"]))["expected 3 fields, got 4"] == 8
    assert sequences(work) == {"u1": ["1", "2", "3"], "u2": ["1", "2", "3"]}
    assert "Traceback" not in capsys.readouterr().err


def test_unknown_item_ids_are_dropped_and_counted(work):
    src = make_platform(work, [
        "u1,1,100", "u1,2,200", "u1,99,250", "u1,3,300",
        "u2,1,100", "u2,77,150", "u2,2,200", "u2,77,250", "u2,3,300", "u2,x,400",
    ], ["1,One", "2,Two", "3,Three"])
    write_params(work, src)
    run(*STEPS)
    clean = stats(work)["clean"]
    assert clean["interactions"]["read"] == 10 and clean["interactions"]["kept"] == 6
    assert clean["interactions"]["dropped"] == {"unknown item id": 4}
    assert_accounted(clean)
    assert sequences(work) == {"u1": ["1", "2", "3"], "u2": ["1", "2", "3"]}


def test_corrupt_jpeg_falls_back_to_text_or_drops_the_item(work):
    good = jpeg()
    src = make_platform(work, [
        "u1,1,100", "u1,2,200", "u1,5,300", "u1,3,400",   # 5: corrupt image, has text -> stays as text
        "u2,1,100", "u2,6,200", "u2,2,300", "u2,3,400",   # 6: corrupt image, no text -> dropped
        "u3,4,100", "u3,6,200", "u3,1,300",               # u3 left with 2 -> dropped
    ], ["1,One", "2,Two", "3,Three", "4,Four", "5,Broken but titled", "6,"],
        images={"1": good, "2": good, "3": good, "4": good,
                "5": bytes(np.random.default_rng(0).integers(0, 256, 500, dtype=np.uint8)),  # random bytes
                "6": good[: len(good) // 2]})                                                   # truncated JPEG
    write_params(work, src)
    run(*STEPS)
    s = stats(work)
    assert s["clean"]["interactions"]["kept"] == 11
    assert s["clean"]["items"]["modality"] == {"both": 5, "image": 1}
    assert s["resize"]["requested"] == 6 and s["resize"]["ok"] == 4 and s["resize"]["corrupt"] == 2
    assert s["resize"]["missing"] == 0
    assert s["split"]["modality_fallbacks"] == {"both -> text (image corrupt)": 1, "image -> dropped (image corrupt)": 1}
    assert s["split"]["dropped"] == {"item dropped (image unreadable, no text)": 2,
                                     "user left with fewer than 3 interactions": 2}
    assert s["split"]["interactions"] == 7
    # nothing lost between clean and split
    assert s["clean"]["interactions"]["kept"] == s["split"]["interactions"] + sum(s["split"]["dropped"].values())
    cat = catalog(work)
    assert cat["5"]["modality"] == "text" and cat["5"]["has_text"]
    assert cat["6"]["modality"] == "dropped" and not cat["6"]["has_text"]
    assert {k: cat[k]["modality"] for k in "1234"} == dict.fromkeys("1234", "both")
    index = dict(pl.read_parquet(proc_dir(work) / "image_index.parquet").select("item", "status").iter_rows())
    assert index[cat["5"]["item"]] == "corrupt" and index[cat["6"]["item"]] == "corrupt"
    assert sequences(work) == {"u1": ["1", "2", "5", "3"], "u2": ["1", "2", "3"]}


def test_missing_image_file_counts_and_falls_back_to_text(work):
    good = jpeg()
    src = make_platform(work, [
        "u1,1,100", "u1,2,200", "u1,4,300",
        "u2,4,100", "u2,3,200", "u2,1,300",
    ], ["1,One,image", "2,Two,image", "3,Three,image", "4,Lost poster,image"],
        images={"1": good, "2": good, "3": good}, item_header="item_id,title,modality")
    write_params(work, src, layout={"modality_col": "modality"})
    run("download", "clean")
    # the image of item 3 also disappears between clean and resize
    (src / "images" / "3.jpg").unlink()
    run("resize", "tokenize", "split")
    s = stats(work)
    assert s["clean"]["items"]["image_missing"] == 1
    assert s["clean"]["items"]["modality_fallbacks"] == {"image -> text": 1}
    assert s["clean"]["items"]["dropped"] == {}
    assert s["resize"]["requested"] == 3 and s["resize"]["ok"] == 2 and s["resize"]["missing"] == 1
    assert s["split"]["modality_fallbacks"] == {"image -> text (image missing)": 1}
    assert s["split"]["dropped"] == {}
    cat = catalog(work)
    assert {k: cat[k]["modality"] for k in "1234"} == {"1": "image", "2": "image", "3": "text", "4": "text"}
    assert cat["4"]["image_row"] == -1
    assert sequences(work) == {"u1": ["1", "2", "4"], "u2": ["4", "3", "1"]}


def test_empty_text_image_item_works_and_contentless_item_is_dropped(work):
    good = jpeg()
    src = make_platform(work, [
        "u1,1,100", "u1,2,200", "u1,4,300",
        "u2,1,100", "u2,3,150", "u2,2,200", "u2,4,300",
        "u3,3,100", "u3,1,200", "u3,2,300",
    ], ["1,", "2,Only words", "3,", "4,Words and picture"], images={"1": good, "4": good})
    write_params(work, src)
    run(*STEPS)
    s = stats(work)
    clean = s["clean"]
    assert clean["items"]["dropped"] == {"no usable content for the modality policy": 1}
    assert clean["items"]["kept"] == 3 and clean["items"]["modality"] == {"both": 1, "image": 1, "text": 1}
    assert clean["interactions"]["dropped"] == {"item dropped (no usable content)": 2,
                                                "user history shorter than 3": 2}
    assert clean["interactions"]["kept"] == 6
    assert_accounted(clean)
    assert s["tokenize"]["items"] == 3 and s["tokenize"]["empty_text"] == 1
    cat = catalog(work)
    assert "3" not in cat
    assert cat["1"]["modality"] == "image" and not cat["1"]["has_text"]
    mask = np.load(proc_dir(work) / "text_mask.npy")
    assert mask[cat["1"]["item"]].sum() == 0 and mask[cat["2"]["item"]].sum() > 0
    images = np.load(proc_dir(work) / "images.npy", mmap_mode="r")
    assert images.shape == (2, 16, 16, 3) and images[cat["1"]["image_row"]].mean() > 0
    assert sequences(work) == {"u1": ["1", "2", "4"], "u2": ["1", "2", "4"]}


def test_duplicate_interactions_are_counted(work):
    src = make_platform(work, [
        "u1,1,100", "u1,2,200", "u1,2,200", "u1,3,300",   # exact duplicate
        "u2,1,100", "u2,2,200", "u2,3,300", "u2,1,400",   # repeat of (u2, 1) later: dedup user_item
    ], ["1,One", "2,Two", "3,Three"])
    write_params(work, src)
    run(*STEPS)
    clean = stats(work)["clean"]
    assert clean["interactions"]["dropped"] == {"duplicate interaction (same user, item, timestamp)": 1,
                                                "repeat of a user-item pair (dedup: user_item)": 1}
    assert clean["interactions"]["kept"] == 6
    assert_accounted(clean)
    assert sequences(work) == {"u1": ["1", "2", "3"], "u2": ["1", "2", "3"]}


def test_user_with_one_interaction_is_dropped_and_counted(work):
    src = make_platform(work, [
        "u1,1,100", "u1,2,200", "u1,3,300",
        "u2,3,100", "u2,2,200", "u2,1,300",
        "u3,2,100",
    ], ["1,One", "2,Two", "3,Three"])
    write_params(work, src)
    run(*STEPS)
    clean = stats(work)["clean"]
    assert clean["interactions"]["dropped"] == {"user history shorter than 3": 1}
    assert clean["users"] == {"distinct": 3, "kept": 2, "dropped": 1}
    assert_accounted(clean)
    assert sequences(work) == {"u1": ["1", "2", "3"], "u2": ["3", "2", "1"]}


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d.__setitem__("fitler", d.pop("filter")), ["'data.fitler'", "did you mean 'filter'"]),
    (lambda d: d["filter"].__setitem__("min_user_len", "five"), ["data.filter.min_user_len", "'five'"]),
    (lambda d: d.__setitem__("tie_break", "item_keys"), ["data.tie_break", "item_key | source_row"]),
])
def test_params_typo_stops_before_any_output(work, capsys, mutate, expected):
    src = make_platform(work, ["u1,1,100"], ["1,One"])
    data = data_section()
    mutate(data)
    write_params(work, src, data=data)
    for step in STEPS:
        assert main([step, "p"]) == 2
        line = one_error_line(capsys, step)
        for text in expected:
            assert text in line
    assert not (work / "data").exists()


def test_layout_typo_stops_before_any_output(work, capsys):
    src = make_platform(work, ["u1,1,100"], ["1,One"])
    write_params(work, src, layout={"seperator": ";"})
    assert main(["download", "p"]) == 2
    line = one_error_line(capsys, "download")
    assert "seperator" in line and "did you mean 'separator'" in line
    assert not (work / "data").exists()


def test_missing_data_folder_names_it(work, capsys):
    missing = work / "no_such_export"
    write_params(work, missing)
    assert main(["download", "p"]) == 2
    assert str(missing) in one_error_line(capsys, "download")
    assert not (work / "data").exists()


def test_data_folder_or_file_gone_after_download(work, capsys):
    src = make_platform(work, ["u1,1,100", "u1,2,200", "u1,3,300"], ["1,One", "2,Two", "3,Three"])
    write_params(work, src)
    run("download")
    (src / "interactions.csv").unlink()
    assert main(["clean", "p"]) == 2
    assert str(src / "interactions.csv") in one_error_line(capsys, "clean")
    for f in ("items.csv",):
        (src / f).unlink()
    src.rmdir()
    assert main(["clean", "p"]) == 2
    line = one_error_line(capsys, "clean")
    assert str(src) in line and "download" in line
    assert not proc_dir(work).exists()


def test_steps_out_of_order_name_the_step_to_run(work, capsys):
    src = make_platform(work, ["u1,1,100", "u1,2,200", "u1,3,300"], ["1,One", "2,Two", "3,Three"])
    write_params(work, src)
    assert main(["clean", "p"]) == 2
    assert "run `transrec download p` first" in one_error_line(capsys, "clean")
    run("download")
    for step in ("resize", "tokenize", "split"):
        assert main([step, "p"]) == 2
        assert "run `transrec clean p` first" in one_error_line(capsys, step)
    run("clean", "resize")
    capsys.readouterr()  # progress bars of the successful steps
    assert main(["split", "p"]) == 2
    assert "run `transrec tokenize p` first" in one_error_line(capsys, "split")
    assert not (proc_dir(work) / "split.parquet").exists()


@pytest.mark.parametrize("tie_break, expected", [
    # numeric keys: 9 before 10 (lexicographic order would put "10" first)
    ("item_key", {"u1": ["11", "9", "10", "8"], "u2": ["8", "10", "11", "9"]}),
    ("source_row", {"u1": ["11", "10", "9", "8"], "u2": ["11", "8", "10", "9"]}),
])
def test_tie_break_orders_same_timestamp_interactions(work, tie_break, expected):
    src = make_platform(work, [
        "u1,10,100", "u1,9,100", "u1,11,50", "u1,8,200",
        "u2,11,500", "u2,8,500", "u2,10,500", "u2,9,600",
    ], ["8,Eight", "9,Nine", "10,Ten", "11,Eleven"])
    write_params(work, src, data=data_section(tie_break=tie_break))
    run(*STEPS)
    assert stats(work)["clean"]["tie_break"] == tie_break
    assert sequences(work) == expected
    split = {r["user"]: r for r in pl.read_parquet(proc_dir(work) / "split.parquet").iter_rows(named=True)}
    key = {k: v["item"] for k, v in catalog(work).items()}
    u1 = split[0]
    assert u1["train"] == [key[k] for k in expected["u1"][:2]]
    assert (u1["valid"], u1["test"]) == (key[expected["u1"][2]], key[expected["u1"][3]])


def test_interrupted_write_leaves_old_output_and_no_temp(work, capsys, monkeypatch):
    src = make_platform(work, ["u1,1,100", "u1,2,200", "u1,3,300", "u2,3,100", "u2,1,200", "u2,2,300"],
                        ["1,One", "2,Two", "3,Three"], images={"1": jpeg(), "2": jpeg(), "3": jpeg()})
    write_params(work, src)
    run(*STEPS)
    proc = proc_dir(work)
    before = (proc / "split.parquet").read_bytes()
    capsys.readouterr()

    def half_written(self, file, *args, **kwargs):  # writes part of the file, then the user hits Ctrl-C
        Path(file).write_bytes(b"PAR1 half a parquet file")
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(pl.DataFrame, "write_parquet", half_written)
        # an existing output survives an interrupted rewrite untouched ...
        assert main(["split", "p"]) == 130
        err = capsys.readouterr().err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
        assert err.startswith("transrec split: interrupted")
        assert (proc / "split.parquet").read_bytes() == before and leftovers(proc) == []
        # ... and without one, no half file appears under the final name
        (proc / "split.parquet").unlink()
        assert main(["split", "p"]) == 130
        assert len(capsys.readouterr().err.strip().splitlines()) == 1
        assert not (proc / "split.parquet").exists() and leftovers(proc) == []

    import transrec.data.images as images_module

    calls = []

    def dies_on_second_image(path, size):
        calls.append(path)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return "ok", np.zeros((size, size, 3), np.uint8)

    old_images = (proc / "images.npy").read_bytes()
    monkeypatch.setattr(images_module, "load_image", dies_on_second_image)
    assert main(["resize", "p", "--workers", "1"]) == 130
    assert "Traceback" not in capsys.readouterr().err
    assert (proc / "images.npy").read_bytes() == old_images and leftovers(proc) == []


def test_atomic_path_removes_temp_when_the_writer_raises(tmp_path, monkeypatch):
    from transrec import atomic

    target = tmp_path / "out" / "frame.parquet"

    def broken(self, file, *args, **kwargs):
        Path(file).write_bytes(b"PAR1 partial")
        raise OSError("No space left on device")

    monkeypatch.setattr(pl.DataFrame, "write_parquet", broken)
    with pytest.raises(TransrecError, match="frame.parquet: no space left on the device"):
        atomic.write_parquet(target, pl.DataFrame({"a": [1, 2]}))
    assert not target.exists() and leftovers(tmp_path) == []
    with pytest.raises(RuntimeError):
        with atomic.atomic_memmap(tmp_path / "out" / "store.npy", (4, 2), np.uint8) as store:
            store[0] = 1
            raise RuntimeError("killed mid-way")
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_outputs_get_the_mode_of_a_plain_write(tmp_path):
    from transrec import atomic

    plain = tmp_path / "plain.json"
    plain.write_text("{}")
    atomic.write_json(tmp_path / "atomic.json", {})
    assert (tmp_path / "atomic.json").stat().st_mode == plain.stat().st_mode


def test_keys_equal_as_numbers_get_a_stable_index(work):
    # "007" and "7" are different items whose numeric sort keys tie: ordered by their text, every run
    src = make_platform(work, ["u1,7,100", "u1,007,200", "u1,8,300", "u2,8,100", "u2,007,200", "u2,7,300"],
                        ["8,Eight", "7,Seven", "007,Agent"])
    write_params(work, src)
    run(*STEPS)
    assert pl.read_parquet(proc_dir(work) / "items.parquet")["key"].to_list() == ["007", "7", "8"]
    assert sequences(work) == {"u1": ["7", "007", "8"], "u2": ["8", "007", "7"]}


def test_unterminated_quote_is_one_error_line(work, capsys):
    src = make_platform(work, ["u1,1,100", "u1,2,200", "u1,3,300"],
                        ['1,"unterminated title'] + [f"{i},Title {i}" for i in range(2, 20000)])
    write_params(work, src)
    run("download")
    try:
        rc = main(["clean", "p"])
    except Exception as exc:  # noqa: BLE001 - the bug: anything but one line is a failure
        pytest.fail(f"traceback: {type(exc).__name__}: {exc}")
    assert rc == 2
    assert "items.csv" in one_error_line(capsys, "clean")


# --------------------------------------------------------------------------- more kinds (issue 11)

def test_a_missing_folder_of_one_of_five_platforms_stops_snakemake_before_any_job(tmp_path):
    """A params file that validates, five platforms, one whose data folder does not exist: the workflow
    stops at parse time, in one line, before any step (training included) runs."""
    import shutil
    import subprocess
    import sys

    bin_dir = Path(sys.executable).parent
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["platforms"]["text_target"] = {"adapter": "csv", "role": "target",
                                          "location": {"path": str(tmp_path / "no_such_export")}}
    work = tmp_path / "w"
    shutil.copytree(ROOT / "workflow", work / "workflow")
    shutil.copy(ROOT / "environment.yml", work)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**__import__("os").environ, "PATH": f"{bin_dir}:{__import__('os').environ['PATH']}"}
    assert subprocess.run([str(bin_dir / "transrec"), "validate"], cwd=work, env=env).returncode == 2
    proc = subprocess.run([str(bin_dir / "snakemake"), "--cores", "1"], cwd=work, env=env, capture_output=True, text=True)
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert proc.returncode != 0 and len(errors) == 1, proc.stderr
    assert "platforms.text_target.location.path" in errors[0] and "no_such_export" in errors[0]
    assert "Traceback" not in proc.stderr and not (work / "data").exists() and not (work / "results").exists()


def test_a_platform_whose_every_user_is_filtered_out_is_one_line(work, capsys):
    src = make_platform(work, ["u1,1,100", "u1,2,200", "u2,1,100"], ["1,One", "2,Two"])
    write_params(work, src)
    run("download")
    assert main(["clean", "p"]) == 2
    line = one_error_line(capsys, "clean")
    assert "no interactions left after cleaning" in line and "min_user_len" in line


def test_a_catalogue_of_one_item(work, capsys):
    """One item: every user's history is that item again and again; deduplicated, each user has one
    interaction and is filtered out (one line); kept as repeats, the platform is processed."""
    rows = [f"u{u},1,{t}" for u in range(3) for t in (100, 200, 300)]
    src = make_platform(work, rows, ["1,The only item"])
    write_params(work, src)
    run("download")
    assert main(["clean", "p"]) == 2
    assert "no interactions left after cleaning" in one_error_line(capsys, "clean")
    write_params(work, src, data_section(dedup="exact"))
    run("download", "clean", "resize", "tokenize", "split")
    s = stats(work)
    assert sum(s["split"]["catalog"].values()) == 1 and s["split"]["users"] == 3
    assert_accounted(s["clean"])


def test_a_history_longer_than_ten_thousand_items(work):
    n = 10_050
    rows = [f"heavy,{i % 500},{i}" for i in range(n)] + ["u2,1,1", "u2,2,2", "u2,3,3"]
    src = make_platform(work, rows, [f"{i},Item {i}" for i in range(500)])
    write_params(work, src, data_section(dedup="exact"))
    run("download", "clean", "resize", "tokenize", "split")
    assert len(sequences(work)["heavy"]) == n
    assert_accounted(stats(work)["clean"])


def test_text_that_is_not_utf8_is_one_line_naming_the_file(work, capsys):
    src = make_platform(work, ["u1,1,100", "u1,2,200", "u1,3,300"], ["1,One", "2,Two", "3,Three"])
    (src / "items.csv").write_bytes("item_id,title\n1,Caf\xe9\n2,Two\n3,Three\n".encode("latin-1"))
    write_params(work, src)
    run("download")
    assert main(["clean", "p"]) == 2
    line = one_error_line(capsys, "clean")
    assert str(src / "items.csv") in line and "utf-8" in line.lower() and "encoding" in line
    write_params(work, src, layout={"encoding": "latin-1"})
    run("download", "clean")
    assert "Café" in pl.read_parquet(proc_dir(work) / "items.parquet")["text"].to_list()[0]


def test_tiny_and_huge_valid_jpegs_are_resized(work):
    """A 1x1 and a 10,000x10,000 JPEG are valid images: both are resized (the big one decoded at reduced
    scale) and counted ok."""
    huge = io.BytesIO()
    Image.new("RGB", (10_000, 10_000), (10, 200, 30)).save(huge, "JPEG", quality=50)
    src = make_platform(work, ["u1,1,100", "u1,2,200", "u1,3,300"], ["1,", "2,", "3,Three"],
                        images={"1": jpeg(size=1), "2": huge.getvalue()}, item_header="item_id,title")
    write_params(work, src, data_section(modality={"policy": "as_is", "image_fraction": 0.5}))
    run("download", "clean", "resize")
    resize = json.loads((proc_dir(work) / "stats" / "resize.json").read_text())
    assert resize["ok"] == 2 and resize["corrupt"] == 0 and resize["missing"] == 0, resize
    images = np.load(proc_dir(work) / "images.npy")
    assert images.shape[1:] == (16, 16, 3) and abs(int(images[:, 8, 8, 1].max()) - 200) < 20


def test_a_symlink_loop_in_the_images_folder_is_a_counted_drop(work):
    src = make_platform(work, ["u1,1,100", "u1,2,200", "u1,3,300", "u1,4,400"], ["1,One", "2,", "3,Three", "4,Four"],
                        images={"1": jpeg()})
    (src / "images" / "2.jpg").symlink_to(src / "images" / "2b.jpg")
    (src / "images" / "2b.jpg").symlink_to(src / "images" / "2.jpg")  # 2.jpg -> 2b.jpg -> 2.jpg
    (src / "images" / "loop").symlink_to(src / "images")             # and a folder that contains itself
    write_params(work, src, data_section(modality={"policy": "as_is", "image_fraction": 0.5}))
    run("download", "clean", "resize", "tokenize", "split")
    resize = json.loads((proc_dir(work) / "stats" / "resize.json").read_text())
    clean = stats(work)["clean"]
    assert resize["ok"] == 1 and clean["items"]["image_missing"] == 3  # the loop is no image (counted)
    assert clean["items"]["dropped"] == {"no usable content for the modality policy": 1} and "2" not in catalog(work)
    assert clean["interactions"]["dropped"] == {"item dropped (no usable content)": 1}  # its row: counted out
    assert_accounted(stats(work)["clean"])
