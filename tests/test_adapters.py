"""Every real-format adapter, end to end through the real CLI: download (locate) -> clean -> resize ->
tokenize -> split on a tiny fixture written in the platform's published layout. The counts in
stats.json are computed by hand in each test's comments; every interaction row must be accounted for.
"""
from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import yaml
from PIL import Image

from transrec.cli import main
from transrec.platforms import common
from transrec.platforms.base import read_table

REPO = Path(__file__).resolve().parents[1]
COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (200, 200, 30)]


# ---------------------------------------------------------------- helpers

def jpeg(path: Path, n: int = 0) -> None:
    """A real, small JPEG (so resize decodes it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (24, 20), COLOURS[n % len(COLOURS)]).save(path, "JPEG")


def write(path: Path, text: str, encoding: str = "utf-8") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))


def params_for(tmp_path: Path, platforms: dict, **data) -> Path:
    """params.yaml in tmp_path: the repo's `data` section at test sizes, plus the given platforms."""
    base = yaml.safe_load((REPO / "params.yaml").read_text())
    settings = base["data"]
    settings["image"]["size"] = 16
    settings["text"].update(tokenizer="minilm", max_len=16)
    settings["filter"].update(min_user_len=3, k_core=0)
    settings.update(data)
    params = {"seed": 0, "paths": {"data": "data", "results": "results"}, "data": settings, "platforms": platforms}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def run(tmp_path: Path, monkeypatch, adapter: str, folder: Path, layout: dict | None = None, name: str = "p",
        steps=("download", "clean", "resize", "tokenize", "split"), **data) -> dict:
    monkeypatch.chdir(tmp_path)
    platform = {"adapter": adapter, "location": {"path": str(folder)}}
    if layout:
        platform["layout"] = layout
    params_for(tmp_path, {name: platform}, **data)
    for step in steps:
        assert main([step, name]) == 0, step
    proc = tmp_path / "data" / "processed" / name
    if "split" in steps:
        stats = json.loads((proc / "stats.json").read_text())
        assert set(stats) == {"clean", "resize", "tokenize", "split"}
        return stats
    if "clean" in steps:
        return {"clean": json.loads((proc / "stats" / "clean.json").read_text())}
    return {}


def processed(tmp_path: Path, name: str = "p") -> Path:
    return tmp_path / "data" / "processed" / name


def sequences(tmp_path: Path, name: str = "p") -> dict[str, list[str]]:
    """user key -> the ordered item keys of the cleaned interactions."""
    proc = processed(tmp_path, name)
    inter = pl.read_parquet(proc / "interactions.parquet")
    items = pl.read_parquet(proc / "items.parquet").select("item", "key")
    users = pl.read_parquet(proc / "users.parquet").rename({"key": "user_key"})
    joined = inter.with_row_index("i").join(items, on="item").join(users, on="user").sort("i")
    out: dict[str, list[str]] = {}
    for user, key in joined.select("user_key", "key").iter_rows():
        out.setdefault(user, []).append(key)
    return out


def check_accounting(stats: dict) -> None:
    c = stats["clean"]["interactions"]
    assert c["accounted"] is True
    assert c["read"] == c["kept"] + sum(c["dropped"].values()) + c["quarantined"]
    # the split step loses nothing silently either
    s = stats["split"]
    assert s["interactions"] == c["kept"] - sum(s["dropped"].values())


# ---------------------------------------------------------------- H&M

ARTICLE_HEADER = ("article_id,product_code,prod_name,product_type_no,product_type_name,product_group_name,"
                  "graphical_appearance_no,graphical_appearance_name,colour_group_code,colour_group_name,"
                  "perceived_colour_value_id,perceived_colour_value_name,perceived_colour_master_id,"
                  "perceived_colour_master_name,department_no,department_name,index_code,index_name,index_group_no,"
                  "index_group_name,section_no,section_name,garment_group_no,garment_group_name,detail_desc")


def article(aid: str, name: str, ptype: str, colour: str, dept: str, desc: str) -> str:
    desc = f'"{desc}"' if "," in desc else desc
    return (f"{aid},{aid[:7]},{name},253,{ptype},Garment Upper body,1010016,Solid,9,{colour},4,Dark,5,Black,"
            f"1676,{dept},A,Ladieswear,1,Ladieswear,16,Womens Everyday Basics,1002,Jersey Basic,{desc}")


def hm_fixture(root: Path) -> Path:
    a1, a2, a3, a4, a5 = "0108775015", "0108775044", "0110065001", "0111565001", "0111586001"
    lines = [ARTICLE_HEADER,
             article(a1, "Strap top", "Vest top", "Black", "Jersey Basic",
                     "Jersey top with narrow shoulder straps, lace trim, and a hem"),
             article(a2, "Strap top (1)", "Vest top", "White", "Jersey Basic", "Jersey top with straps"),
             article(a3, "OP T-shirt (Idro)", "Bra", "Black", "Clean Lingerie", "Microfibre T-shirt bra"),
             article(a4, "", "", "", "", ""),                      # no text, no image: dropped
             article(a5, "Tights basic", "Underwear Tights", "Black", "Tights basic", "Semi shiny nylon tights"),
             "0112679048,broken row,with too few fields"]           # quarantined
    write(root / "articles.csv", "\n".join(lines) + "\n")
    jpeg(root / "images" / "010" / f"{a1}.jpg", 0)
    jpeg(root / "images" / "010" / f"{a2}.jpg", 1)
    (root / "images" / "011").mkdir(parents=True)
    (root / "images" / "011" / f"{a5}.jpg").write_bytes(b"not a jpeg")   # corrupt: falls back to text
    u1, u2, u3, u4 = ("a" * 64, "b" * 64, "c" * 64, "d" * 64)
    rows = ["t_dat,customer_id,article_id,price,sales_channel_id",
            f"2018-09-20,{u1},0108775044,0.0508,2",   # same day as the next row: tie, item key decides
            f"2018-09-20,{u1},108775015,0.0508,2",    # id without its leading zero
            f"2018-09-21,{u1},110065001,0.0305,2",
            f"2018-09-22,{u1},0108775015,0.0508,2",   # repeat of a user-item pair (dedup user_item)
            f"2018-09-22,{u1},0111565001,0.0100,1",   # item without content: dropped
            f"2018-09-20,{u2},0108775044,0.0508,2",
            f"2018-09-21,{u2},0110065001,0.0305,2",
            f"2018-09-23,{u2},0111586001,0.0200,1",
            f"2018-09-20,{u3},0108775015,0.0508,2",   # u3: two interactions, too short
            f"2018-09-21,{u3},0110065001,0.0305,2",
            f"2018-09-20,{u4},0108775015,0.0508,2",
            f"2018-09-21,{u4},0108775044,0.0508,2",
            f"2018-09-22,{u4},0999999999,0.0508,2",   # unknown article
            f"2018-09-23,{u4},0110065001,0.0305,2",
            f"2018-13-45,{u4},0110065001,0.0305,2",   # bad date: quarantined
            "2018-09-20,eeee"]                        # malformed: quarantined
    write(root / "transactions_train.csv", "\n".join(rows) + "\n")
    return root


def test_hm(tmp_path, monkeypatch):
    folder = hm_fixture(tmp_path / "hm")
    stats = run(tmp_path, monkeypatch, "hm", folder)
    c = stats["clean"]
    # 16 rows read: 2 quarantined, 1 unknown article, 1 article without content, 1 repeat, u3's 2 -> 9 kept
    assert c["interactions"]["read"] == 16
    assert c["interactions"]["quarantined"] == 2
    assert c["interactions"]["quarantine_reasons"] == {"bad timestamp": 1, "expected 5 fields, got 2": 1}
    assert c["interactions"]["dropped"] == {
        "unknown item id": 1, "item dropped (no usable content)": 1,
        "repeat of a user-item pair (dedup: user_item)": 1, "user history shorter than 3": 2}
    assert c["interactions"]["kept"] == 9
    assert c["users"] == {"distinct": 4, "kept": 3, "dropped": 1}
    assert c["items"]["read"] == 6 and c["items"]["quarantined"] == 1 and c["items"]["distinct"] == 5
    assert c["items"]["dropped"] == {"no usable content for the modality policy": 1}
    assert c["items"]["kept"] == 4 and c["items"]["modality"] == {"both": 3, "text": 1}
    assert stats["resize"]["requested"] == 3 and stats["resize"]["ok"] == 2 and stats["resize"]["corrupt"] == 1
    assert stats["split"]["catalog"] == {"both": 2, "text": 2}
    assert stats["split"]["users"] == 3 and stats["split"]["interactions"] == 9
    check_accounting(stats)

    items = pl.read_parquet(processed(tmp_path) / "items.parquet")
    keys = items["key"].to_list()
    assert keys == ["0108775015", "0108775044", "0110065001", "0111586001"]   # leading zeros kept
    row = items.filter(pl.col("key") == "0108775015").row(0, named=True)
    assert row["image"] == str((folder / "images" / "010" / "0108775015.jpg").resolve())
    assert row["title"] == "Strap top"
    assert row["text"] == ("Strap top. Vest top. Black. Jersey Basic. "
                           "Jersey top with narrow shoulder straps, lace trim, and a hem")
    assert items.filter(pl.col("key") == "0110065001")["modality"].item() == "text"
    seqs = sequences(tmp_path)
    # same-day purchases ordered by item key (default tie rule)
    assert seqs["a" * 64] == ["0108775015", "0108775044", "0110065001"]
    inter = pl.read_parquet(processed(tmp_path) / "interactions.parquet")
    assert inter["timestamp"].min() == 1537401600   # 2018-09-20 00:00 UTC
    catalog = pl.read_parquet(processed(tmp_path) / "catalog.parquet")
    assert catalog.filter(pl.col("key") == "0111586001")["modality"].item() == "text"   # corrupt image -> text


def test_hm_tie_rule_source_row(tmp_path, monkeypatch):
    folder = hm_fixture(tmp_path / "hm")
    run(tmp_path, monkeypatch, "hm", folder, steps=("download", "clean"), tie_break="source_row")
    assert sequences(tmp_path)["a" * 64] == ["0108775044", "0108775015", "0110065001"]   # file order


def test_hm_layout_text_fields_and_missing_files(tmp_path, monkeypatch, capsys):
    folder = hm_fixture(tmp_path / "hm")
    run(tmp_path, monkeypatch, "hm", folder, layout={"text_fields": ["prod_name", "colour_group_name"]},
        steps=("download", "clean"))
    items = pl.read_parquet(processed(tmp_path) / "items.parquet")
    assert items.filter(pl.col("key") == "0108775015")["text"].item() == "Strap top. Black"

    (folder / "transactions_train.csv").unlink()
    capsys.readouterr()
    assert main(["clean", "p"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "transactions_train.csv" in err and "kaggle.com" in err and "by hand" in err


def test_hm_missing_folder_says_place_by_hand(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    params_for(tmp_path, {"p": {"adapter": "hm", "location": {"path": str(tmp_path / "nowhere")}}})
    assert main(["download", "p"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "h-and-m-personalized-fashion-recommendations" in err and "by hand" in err


# ---------------------------------------------------------------- MicroLens

def microlens_fixture(root: Path, form: str = "csv") -> Path:
    # items: 1 title + cover (both), 2 title only (text), 3 cover only (image), 4 nothing (dropped)
    write(root / "MicroLens-100k_title_en.csv", '1,"A cat, jumping over a fence"\n2,Cooking noodles at home\n3,\n4,\n')
    jpeg(root / "MicroLens-100k_covers" / "1.jpg", 0)
    jpeg(root / "MicroLens-100k_covers" / "3.jpg", 2)
    if form == "csv":
        write(root / "MicroLens-100k_pairs.csv", "\n".join([
            "userID,videoID,timestamp",
            "10,1,1583314752123",
            "10,3,1583314753999",   # same second as the next row once ms become s: tie -> item key
            "10,2,1583314753456",
            "11,2,1583314800000",
            "11,3,1583314800001",
            "11,1,1583314900000",
            "11,4,1583315000000",   # item without content: dropped
            "12,1,1583314752000",   # user 12: two interactions, too short
            "12,2,1583314752001"]) + "\n")
    else:
        write(root / "MicroLens-100k_pairs.tsv", "10\t1 2 3\n11\t2 3 1 4\n12\t1 2\nno tab here\n")
    return root


def test_microlens_csv(tmp_path, monkeypatch):
    stats = run(tmp_path, monkeypatch, "microlens", microlens_fixture(tmp_path / "ml"))
    c = stats["clean"]
    # 9 rows: item 4 dropped (1), user 12 too short (2) -> 6 kept
    assert c["interactions"]["read"] == 9 and c["interactions"]["quarantined"] == 0
    assert c["interactions"]["dropped"] == {"item dropped (no usable content)": 1, "user history shorter than 3": 2}
    assert c["interactions"]["kept"] == 6
    assert c["users"] == {"distinct": 3, "kept": 2, "dropped": 1}
    assert c["items"]["read"] == 4 and c["items"]["kept"] == 3
    assert c["items"]["dropped"] == {"no usable content for the modality policy": 1}
    assert c["items"]["modality"] == {"both": 1, "image": 1, "text": 1}
    assert stats["split"]["catalog"] == {"both": 1, "image": 1, "text": 1}
    assert stats["split"]["users"] == 2 and stats["split"]["interactions"] == 6
    check_accounting(stats)
    inter = pl.read_parquet(processed(tmp_path) / "interactions.parquet")
    assert inter["timestamp"].max() == 1583314900   # milliseconds became seconds
    assert sequences(tmp_path)["10"] == ["1", "2", "3"]
    items = pl.read_parquet(processed(tmp_path) / "items.parquet")
    assert items.filter(pl.col("key") == "1")["text"].item() == "A cat, jumping over a fence"


def test_microlens_tsv(tmp_path, monkeypatch):
    stats = run(tmp_path, monkeypatch, "microlens", microlens_fixture(tmp_path / "ml", form="tsv"))
    c = stats["clean"]
    # 9 interactions in 3 lines + 1 malformed line (quarantined as one row)
    assert c["interactions"]["read"] == 10 and c["interactions"]["quarantined"] == 1
    assert c["interactions"]["dropped"] == {"item dropped (no usable content)": 1, "user history shorter than 3": 2}
    assert c["interactions"]["kept"] == 6
    check_accounting(stats)
    seqs = sequences(tmp_path)
    assert seqs["10"] == ["1", "2", "3"] and seqs["11"] == ["2", "3", "1"]   # the line's order is the time order


# ---------------------------------------------------------------- NineRec

def ninerec_fixture(root: Path) -> Path:
    # no headers (as NineRec's get_behaviour.py / get_lmdb.py read them)
    write(root / "QB_item.csv", "\n".join([
        "101,猫咪跳舞,Cat dancing",
        "102,做饭,Cooking at home",
        "103,风景,",                 # English title empty: image only (cover exists)
        "104,,",                     # nothing: dropped
        "105,broken",                # malformed: quarantined
    ]) + "\n")
    jpeg(root / "QB_cover" / "101.jpg", 0)
    jpeg(root / "QB_cover" / "103.jpg", 1)
    write(root / "QB_pair.csv", "\n".join([
        "101,7,100", "102,7,200", "103,7,300", "101,7,400",     # last: repeat of a user-item pair
        "102,8,50", "103,8,60", "104,8,70", "101,8,80",         # 104: item without content
        "101,9,10", "999,9,20",                                 # 999 unknown; user 9 then too short
    ]) + "\n")
    return root


def test_ninerec(tmp_path, monkeypatch):
    stats = run(tmp_path, monkeypatch, "ninerec", ninerec_fixture(tmp_path / "QB"))
    c = stats["clean"]
    assert c["interactions"]["read"] == 10 and c["interactions"]["quarantined"] == 0
    assert c["interactions"]["dropped"] == {
        "unknown item id": 1, "item dropped (no usable content)": 1,
        "repeat of a user-item pair (dedup: user_item)": 1, "user history shorter than 3": 1}
    assert c["interactions"]["kept"] == 6
    assert c["users"] == {"distinct": 3, "kept": 2, "dropped": 1}
    assert c["items"]["read"] == 5 and c["items"]["quarantined"] == 1 and c["items"]["distinct"] == 4
    assert c["items"]["modality"] == {"both": 1, "image": 1, "text": 1}
    assert stats["split"]["catalog"] == {"both": 1, "image": 1, "text": 1}
    check_accounting(stats)
    assert sequences(tmp_path) == {"7": ["101", "102", "103"], "8": ["102", "103", "101"]}
    items = pl.read_parquet(processed(tmp_path) / "items.parquet")
    assert items.filter(pl.col("key") == "101")["text"].item() == "Cat dancing"


def test_ninerec_chinese_titles_and_dataset_name(tmp_path, monkeypatch):
    folder = ninerec_fixture(tmp_path / "QB")
    stats = run(tmp_path, monkeypatch, "ninerec", folder, steps=("download", "clean"),
                layout={"dataset": "QB", "text_fields": ["title"], "title_field": "title"})
    # with the Chinese title item 103 has text too: both
    assert stats["clean"]["items"]["modality"] == {"both": 2, "text": 1}


# ---------------------------------------------------------------- PixelRec

PIXEL_HEADER = ("item_id,view_number,comment_number,thumbup_number,share_number,coin_number,favorite_number,"
                "barrage_number,title,tag,description")


def pixelrec_fixture(root: Path) -> Path:
    write(root / "information" / "Pixel200K.csv", "\n".join([
        PIXEL_HEADER,
        'i0,100,2,10,1,0,3,5,Drawing a cat,art,"Pencil, ink and patience"',
        "i1,80,1,5,0,0,1,2,Guitar lesson,music,",
        "i2,50,0,1,0,0,0,0,,,",            # cover only: image
        "i3,10,0,0,0,0,0,0,,,",            # nothing: dropped
    ]) + "\n")
    jpeg(root / "cover" / "i0.jpg", 0)
    jpeg(root / "cover" / "i2.jpg", 3)
    write(root / "dataset" / "Pixel200K.csv", "\n".join([
        "item_id,user_id,timestamp",
        "i0,u0,1600000000", "i1,u0,1600000001", "i2,u0,1600000002",
        "i1,u1,1600000100", "i2,u1,1600000200", "i0,u1,1600000300", "i3,u1,1600000400",
        "i0,u2,1600000000", "i1,u2,1600000001", "i2,u2,not-a-time",
    ]) + "\n")
    return root


def test_pixelrec(tmp_path, monkeypatch):
    stats = run(tmp_path, monkeypatch, "pixelrec", pixelrec_fixture(tmp_path / "pixel"))
    c = stats["clean"]
    # 10 rows: 1 bad timestamp (quarantined), i3 without content (1), u2 then too short (2) -> 6 kept
    assert c["interactions"]["read"] == 10 and c["interactions"]["quarantined"] == 1
    assert c["interactions"]["quarantine_reasons"] == {"bad timestamp": 1}
    assert c["interactions"]["dropped"] == {"item dropped (no usable content)": 1, "user history shorter than 3": 2}
    assert c["interactions"]["kept"] == 6
    assert c["users"] == {"distinct": 3, "kept": 2, "dropped": 1}
    assert c["items"]["modality"] == {"both": 1, "image": 1, "text": 1}
    assert stats["split"]["catalog"] == {"both": 1, "image": 1, "text": 1}
    check_accounting(stats)
    items = pl.read_parquet(processed(tmp_path) / "items.parquet")
    assert items.filter(pl.col("key") == "i0")["text"].item() == "Drawing a cat. art. Pencil, ink and patience"
    assert sequences(tmp_path)["u1"] == ["i1", "i2", "i0"]


def test_pixelrec_layout_overrides(tmp_path, monkeypatch):
    """PixelRec's own code reads covers from images/; file names without {dataset} work too."""
    folder = pixelrec_fixture(tmp_path / "pixel")
    (folder / "cover").rename(folder / "images")
    (folder / "dataset" / "Pixel200K.csv").rename(folder / "inter.csv")
    stats = run(tmp_path, monkeypatch, "pixelrec", folder, steps=("download", "clean"),
                layout={"covers": "images", "pairs": "inter.csv"})
    assert stats["clean"]["items"]["modality"] == {"both": 1, "image": 1, "text": 1}
    assert stats["clean"]["interactions"]["kept"] == 6


# ---------------------------------------------------------------- generic csv

def test_csv_layout(tmp_path, monkeypatch):
    root = tmp_path / "csv"
    write(root / "items.csv", "item_id,title\na,A red square\nb,A blue circle\nc,\nd,\n")
    jpeg(root / "images" / "a.jpg", 0)
    jpeg(root / "images" / "c.jpg", 2)
    write(root / "interactions.csv", "user_id,item_id,timestamp\n" + "\n".join([
        "u1,a,10", "u1,b,20", "u1,c,30", "u2,b,5", "u2,c,6", "u2,a,7", "u2,d,8", "u3,a,1", "u3,b,2"]) + "\n")
    stats = run(tmp_path, monkeypatch, "csv", root)
    c = stats["clean"]
    assert c["interactions"]["read"] == 9 and c["interactions"]["kept"] == 6
    assert c["interactions"]["dropped"] == {"item dropped (no usable content)": 1, "user history shorter than 3": 2}
    assert c["items"]["modality"] == {"both": 1, "image": 1, "text": 1}
    assert stats["split"]["catalog"] == {"both": 1, "image": 1, "text": 1}
    check_accounting(stats)


def test_csv_layout_reads_plain_files_with_polars(tmp_path, monkeypatch):
    """The csv layout (and the synthetic platforms) read a plain file without the row-by-row reader, whose
    Python strings took ~10x the file in memory; a malformed line still goes through it and is quarantined."""
    from transrec.platforms import csv_layout

    root = tmp_path / "csv"
    write(root / "items.csv", "item_id,title\na,A red square\nb,A blue circle\n")
    write(root / "interactions.csv", "user_id,item_id,timestamp\nu1,a,10\nu1,b,20\n")
    calls = []
    monkeypatch.setattr(common, "read_table", lambda *a, **k: calls.append(a[1]) or read_table(*a, **k))
    raw = csv_layout.read(root, None)
    assert calls == [] and raw.interactions.columns == ["user", "item", "timestamp", "row"]
    assert raw.interactions["item"].to_list() == ["a", "b"] and raw.items["item"].to_list() == ["a", "b"]
    write(root / "interactions.csv", "user_id,item_id,timestamp\nu1,a,10\nu1,b\nu2,b,30\n")
    raw = csv_layout.read(root, None)
    assert calls == ["interactions"] and raw.interactions["row"].to_list() == [0, 2]
    assert [q["reason"] for q in raw.quarantine] == ["expected 3 fields, got 2"]


# ---------------------------------------------------------------- MovieLens (GroupLens layouts)

def u_item(mid: int, title: str, genres: set[int]) -> str:
    flags = "|".join("1" if g in genres else "0" for g in range(19))
    return f"{mid}|{title}|01-Jan-1995||http://us.imdb.com/M/title-exact?x|{flags}"


def test_movielens_100k(tmp_path, monkeypatch):
    root = tmp_path / "ml-100k"
    write(root / "u.item", "\n".join([
        u_item(1, "Toy Story (1995)", {3, 4, 5}),
        u_item(2, "GoldenEye (1995)", {1, 2, 16}),
        u_item(3, "Café au lait (1993)", {5}),          # latin-1, as GroupLens ships it
    ]) + "\n", encoding="latin-1")
    jpeg(root / "posters" / "1.jpg", 0)
    jpeg(root / "posters" / "3.jpg", 1)
    write(root / "u.data", "\n".join([
        "1\t1\t5\t874965758", "1\t2\t3\t874965758", "1\t3\t4\t874965800",   # 1 and 2 tie
        "2\t3\t4\t888550871", "2\t1\t3\t888550872", "2\t2\t4\t888550873",
        "2\t2\t4\t888550873",                                             # exact duplicate
        "3\t1\t4\t880000000", "3\t2\t2\t880000001",                       # too short
        "4\t1\t5",                                                        # malformed
    ]) + "\n")
    stats = run(tmp_path, monkeypatch, "movielens", root)
    c = stats["clean"]
    assert c["interactions"]["read"] == 10 and c["interactions"]["quarantined"] == 1
    assert c["interactions"]["dropped"] == {"duplicate interaction (same user, item, timestamp)": 1,
                                            "user history shorter than 3": 2}
    assert c["interactions"]["kept"] == 6
    assert c["users"] == {"distinct": 3, "kept": 2, "dropped": 1}
    assert c["items"]["modality"] == {"both": 2, "text": 1}      # 2 has no poster: text
    assert stats["split"]["catalog"] == {"both": 2, "text": 1}
    check_accounting(stats)
    items = pl.read_parquet(processed(tmp_path) / "items.parquet")
    assert items.filter(pl.col("key") == "3")["text"].item() == "Café au lait (1993). Comedy"
    assert sequences(tmp_path)["1"] == ["1", "2", "3"]


def test_movielens_1m(tmp_path, monkeypatch):
    root = tmp_path / "ml-1m"
    write(root / "movies.dat", "1::Toy Story (1995)::Animation|Children's|Comedy\n2::Jumanji (1995)::Adventure\n"
          "3::Grumpier Old Men (1995)::Comedy|Romance\n", encoding="latin-1")
    jpeg(root / "posters" / "2.jpg", 0)
    write(root / "ratings.dat", "\n".join([
        "1::1::5::978300760", "1::2::3::978302109", "1::3::3::978301968",
        "2::1::4::978298413", "2::3::2::978299000", "2::2::5::978299100", "2::9::5::978299200",   # 9 unknown
        "3::1::4::978300000",                                                                     # too short
        "3::3",                                                                                   # malformed
    ]) + "\n")
    stats = run(tmp_path, monkeypatch, "movielens", root)
    c = stats["clean"]
    assert c["interactions"]["read"] == 9 and c["interactions"]["quarantined"] == 1
    assert c["interactions"]["dropped"] == {"unknown item id": 1, "user history shorter than 3": 1}
    assert c["interactions"]["kept"] == 6
    assert c["items"]["modality"] == {"both": 1, "text": 2}
    assert stats["split"]["catalog"] == {"both": 1, "text": 2}
    check_accounting(stats)
    assert sequences(tmp_path)["1"] == ["1", "3", "2"]


def test_movielens_item_without_title_genres_or_poster_is_dropped(tmp_path, monkeypatch):
    root = tmp_path / "ml-100k"
    write(root / "u.item", "\n".join([u_item(1, "Toy Story (1995)", {3}), u_item(2, "", set()),
                                      u_item(3, "Heat (1995)", {1})]) + "\n", encoding="latin-1")
    write(root / "u.data", "1\t1\t5\t10\n1\t2\t5\t11\n1\t1\t5\t12\n1\t3\t5\t13\n"
                           "2\t1\t5\t10\n2\t2\t5\t11\n2\t1\t1\t12\n2\t3\t1\t13\n")
    stats = run(tmp_path, monkeypatch, "movielens", root, steps=("download", "clean"), dedup="exact")
    assert stats["clean"]["items"]["dropped"] == {"no usable content for the modality policy": 1}


# ---------------------------------------------------------------- the shared reader

def test_fast_reader_matches_read_table(tmp_path):
    """The polars fast path returns exactly what base.read_table returns for a well-formed file,
    and a malformed file goes through read_table (same quarantine)."""
    path = tmp_path / "a.csv"
    write(path, 'id,name,desc\n1, x ,"a, b"\n2,y,\n3,"z ""q""",c\n')
    q1: list[dict] = []
    q2: list[dict] = []
    fast = common.read_csv(path, "items", ["id", "desc"], quarantine=q1)
    slow = read_table(path, "items", ["id", "desc"], quarantine=q2)
    assert fast.equals(slow) and q1 == q2 == []
    write(path, 'id,name,desc\n1,x,"a, b"\n2,y\n3,z,c\n')
    q1, q2 = [], []
    assert common.read_csv(path, "items", ["id", "desc"], quarantine=q1).equals(
        read_table(path, "items", ["id", "desc"], quarantine=q2))
    assert q1 == q2 and len(q1) == 1
    nohead = tmp_path / "b.csv"
    write(nohead, "1,x\n2,y\n")
    assert common.read_csv(nohead, "items", ["id", "name"], has_header=False, quarantine=[]).equals(
        read_table(nohead, "items", ["id", "name"], has_header=False, quarantine=[]))


def test_ninerec_two_datasets_in_one_folder_ask_for_layout_dataset(tmp_path, monkeypatch, capsys):
    folder = ninerec_fixture(tmp_path / "both")
    (folder / "TN_pair.csv").write_text("1,2,3\n")
    run(tmp_path, monkeypatch, "ninerec", folder, steps=("download",))
    assert main(["clean", "p"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "QB, TN" in err[0] and "layout.dataset" in err[0]


# ---------------------------------------------------------------- MoRec / IISAN (Amazon)

def morec_fixture(root: Path) -> Path:
    # users.tsv: chronological item lists; u1 repeats i1 (dedup user_item keeps the first), u3 has an item
    # without a title (unknown item id), one line has no tab (quarantined)
    write(root / "users.tsv", "u1\ti1 i2 i1 i3\nu2\ti2 i3 i4\nu3\ti4 i9 i1 i2\nbroken line without tab\n")
    # items.tsv: no header; an HTML entity, csv quoting with doubled quotes, a leading space, an unused item
    write(root / "items.tsv", 'i1\tGuitar Strings &amp; Picks\ni2\t"Zildjian 20"" Ride Cymbal"\n'
                              "i3\t  Capo for 6-String Guitars\ni4\tDrum Sticks 5A\ni5\tNever Bought\n")
    return root


def test_morec(tmp_path, monkeypatch):
    stats = run(tmp_path, monkeypatch, "morec", morec_fixture(tmp_path / "amazon"))
    c = stats["clean"]
    # 4 + 3 + 4 = 11 interactions in 3 lines + 1 malformed line (one quarantined row)
    assert c["interactions"]["read"] == 12 and c["interactions"]["quarantined"] == 1
    assert c["interactions"]["dropped"] == {"unknown item id": 1, "repeat of a user-item pair (dedup: user_item)": 1}
    assert c["interactions"]["kept"] == 9
    assert c["items"]["dropped"] == {"no interactions after filtering": 1}  # i5
    check_accounting(stats)
    seqs = sequences(tmp_path)
    assert seqs == {"u1": ["i1", "i2", "i3"], "u2": ["i2", "i3", "i4"], "u3": ["i4", "i1", "i2"]}
    items = dict(pl.read_parquet(processed(tmp_path) / "items.parquet").select("key", "title").iter_rows())
    assert items == {"i1": "Guitar Strings & Picks", "i2": 'Zildjian 20" Ride Cymbal', "i3": "Capo for 6-String Guitars",
                     "i4": "Drum Sticks 5A"}


def test_morec_excludes_users_of_another_platform(tmp_path, monkeypatch):
    root = morec_fixture(tmp_path / "amazon" / "Scientific")
    write(tmp_path / "amazon" / "Instrument" / "users.tsv", "u2\tx1 x2 x3\nu7\tx4 x5 x6\n")
    stats = run(tmp_path, monkeypatch, "morec", root, layout={"exclude_users_of": "../Instrument/users.tsv"})
    c = stats["clean"]["interactions"]
    assert c["dropped"]["user also in users.tsv of Instrument (exclude_users_of)"] == 3  # u2's 3 interactions
    assert set(sequences(tmp_path)) == {"u1", "u3"}
    check_accounting(stats)


def test_morec_missing_exclude_file_is_one_line(tmp_path, monkeypatch, capsys):
    root = morec_fixture(tmp_path / "amazon")
    monkeypatch.chdir(tmp_path)
    params_for(tmp_path, {"p": {"adapter": "morec", "location": {"path": str(root)},
                                "layout": {"exclude_users_of": "../Other/users.tsv"}}})
    assert main(["download", "p"]) == 0
    assert main(["clean", "p"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "users file named by layout.exclude_users_of" in err[0]
