"""Helpers shared by the real-format adapters (hm, ninerec, microlens, pixelrec).

- `read_csv`: the `base.read_table` contract (string columns, `row`, malformed rows quarantined) with a
  fast path: polars reads the file when every line is a plain record (no quotes, no blank line, the
  same number of fields: H&M transactions, every interaction file); anything else (a malformed row, a
  quoted field, an encoding problem) goes to `read_table`, which finds and quarantines the bad rows.
  Both paths return the same frame for a well-formed file.
- `read_columns`: a csv whose header may or may not be there (`header: auto | true | false`).
- `read_sequences`: the "user<TAB>item item item" form (MicroLens `_pairs.tsv`, NineRec `_behaviour.tsv`).
- timestamp, text and image-path expressions.
"""
from __future__ import annotations

import csv
import io
import re
from pathlib import Path

import polars as pl

from transrec.errors import TransrecError
from transrec.platforms.base import RawPlatform, read_table, require_file
from transrec.platforms.layout import resolve_layout

# First-row values that mark a header row when `header: auto` (compared lower-cased).
HEADER_WORDS = {"user", "user_id", "userid", "uid", "item", "item_id", "itemid", "iid", "video_id", "videoid",
                "bvid", "id", "timestamp", "time", "ts", "title", "title_en", "customer_id", "article_id", "t_dat"}


def read_csv(path: Path, table: str, columns: list[str], *, separator: str = ",", has_header: bool = True,
             quarantine: list[dict], encoding: str = "utf-8") -> pl.DataFrame:
    """Like `base.read_table` (same columns, same `row`, same quarantine), fast for well-formed files."""
    if len(separator) == 1 and encoding.lower().replace("-", "") in ("utf8", "utf8lossy"):
        frame = _fast(path, columns, separator, has_header)
        if frame is not None:
            return frame
    return read_table(path, table, columns, separator=separator, has_header=has_header, encoding=encoding,
                      quarantine=quarantine)


def _fast(path: Path, columns: list[str], separator: str, has_header: bool) -> pl.DataFrame | None:
    """polars, when every line is a plain record: no quotes, no blank line, the same number of fields.

    polars reads a missing field like an empty one, so the field count is checked per physical line
    first (a streaming pass); a quoted file (fields may hold separators or newlines) takes the slow path.
    """
    try:
        lines = pl.scan_csv(path, has_header=False, separator="\x1f", quote_char=None, infer_schema=False,
                            raise_if_empty=False)
        line = pl.first()
        fields = line.str.count_matches(separator, literal=True)
        shape = lines.select(n=pl.len(), blank=line.is_null().sum(),
                             quoted=line.str.contains('"', literal=True).sum(),
                             lo=fields.min(), hi=fields.max()).collect(engine="streaming").row(0, named=True)
        if not shape["n"] or shape["blank"] or shape["quoted"] or shape["lo"] != shape["hi"]:
            return None
        if not has_header and shape["lo"] + 1 != len(columns):
            return None
        frame = pl.read_csv(path, has_header=has_header, separator=separator, quote_char=None, infer_schema=False,
                            empty_string_is_null=False)
    except (pl.exceptions.PolarsError, OSError, ValueError):
        return None
    if has_header:
        frame = frame.rename({c: c.strip().lstrip("\ufeff") for c in frame.columns})
        if any(c not in frame.columns for c in columns):
            return None  # read_table names the missing column(s)
    else:
        frame = frame.rename(dict(zip(frame.columns, columns)))
    return frame.select([pl.col(c).str.strip_chars() for c in columns]).with_row_index("row").select(
        *columns, pl.col("row").cast(pl.Int64))


def first_record(path: Path, separator: str = ",", encoding: str = "utf-8") -> list[str]:
    """The first non-blank csv record of a file (its header, if it has one)."""
    with path.open("r", encoding=encoding, errors="replace", newline="") as fh:
        head = fh.read(1 << 16)
    for fields in csv.reader(io.StringIO(head), delimiter=separator):
        if fields and any(f.strip() for f in fields):
            return [f.strip().lstrip("\ufeff") for f in fields]
    return []


def read_columns(path: Path, table: str, names: list[str], wanted: dict[str, str], *, header: str | bool,
                 quarantine: list[dict], separator: str = ",", layout_key: str = "columns") -> pl.DataFrame:
    """Read the `wanted` columns ({file column: output name}) of a csv, with or without a header row.

    `names` are the file's columns in order, used when there is no header (and when a header's names
    differ from the expected ones but its width matches: the header row is then skipped by position).
    header: true | false | "auto" (a first row with a known column word, e.g. user_id, is a header).
    """
    first = first_record(path, separator)
    if header == "auto":
        has_header = bool({f.lower() for f in first} & (HEADER_WORDS | {n.lower() for n in names}))
    else:
        has_header = bool(header)
    if has_header:
        if all(c in first for c in wanted):
            frame = read_csv(path, table, list(wanted), separator=separator, quarantine=quarantine)
            return frame.rename(wanted)
        if len(first) != len(names) or len(set(first)) != len(first):
            raise TransrecError(f"{path}: header has {', '.join(first)}; expected column(s) "
                                f"{', '.join(wanted)} (set layout.{layout_key} or the column names)")
        by_position = {first[names.index(c)]: out for c, out in wanted.items()}
        frame = read_csv(path, table, list(by_position), separator=separator, quarantine=quarantine)
        return frame.rename(by_position)
    n_before = len(quarantine)
    frame = read_csv(path, table, names, separator=separator, has_header=False, quarantine=quarantine)
    if frame.height == 0 and len(quarantine) > n_before:
        reason = quarantine[-1]["reason"]
        raise TransrecError(f"{path}: no row has the {len(names)} fields that layout.{layout_key} names "
                            f"({', '.join(names)}); e.g. {reason}: set layout.{layout_key} to the file's columns")
    return frame.select(*[pl.col(c).alias(out) for c, out in wanted.items()], "row")


def read_sequences(path: Path, quarantine: list[dict]) -> pl.DataFrame:
    """`user<TAB>item item ...` lines, items in chronological order -> one interaction per item.

    The timestamp is the item's position in its line (0, 1, ...), so the file's order is the time order.
    A line without a tab or without items is quarantined as one row (its interactions are unknown).
    """
    require_file(path, "interaction sequences file")
    users: list[str] = []
    items: list[str] = []
    times: list[str] = []
    with path.open("r", encoding="utf-8", errors="strict", newline="") as fh:
        try:
            lines = fh.read().splitlines()
        except UnicodeDecodeError as exc:
            raise TransrecError(f"{path}: not utf-8 text ({exc.reason} at byte {exc.start})") from None
    for line_no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        user, tab, rest = line.partition("\t")
        seq = rest.split()
        if not tab or not user.strip() or not seq:
            quarantine.append({"table": "interactions", "file": path.name, "line": line_no,
                               "reason": "expected user<TAB>space-separated items", "raw": line[:500]})
            continue
        users.extend([user.strip()] * len(seq))
        items.extend(seq)
        times.extend(str(i) for i in range(len(seq)))
    return pl.DataFrame({"user": users, "item": items, "timestamp": times},
                        schema={"user": pl.String, "item": pl.String, "timestamp": pl.String}).with_row_index(
        "row").select("user", "item", "timestamp", pl.col("row").cast(pl.Int64))


def to_seconds(frame: pl.DataFrame, column: str, unit: str) -> pl.DataFrame:
    """Integer unix seconds from numeric timestamps in s or ms (`unit`: s | ms | auto).

    auto: milliseconds when the largest value is above 1e11 (1e11 s is the year 5138). Values that are
    not numbers are left as they are, so clean quarantines them with their raw text.
    """
    if unit not in ("s", "ms", "auto"):
        raise TransrecError(f"layout time_unit must be s, ms or auto, got {unit!r}")
    number = pl.col(column).cast(pl.String).str.strip_chars().cast(pl.Float64, strict=False)
    if unit == "auto":
        top = frame.select(number.max()).item()
        unit = "ms" if top is not None and top > 1e11 else "s"
    if unit == "s":
        return frame
    seconds = (number / 1000).floor().cast(pl.Int64).cast(pl.String)
    return frame.with_columns(pl.when(number.is_not_null()).then(seconds).otherwise(pl.col(column)).alias(column))


def date_to_seconds(column: str, fmt: str = "%Y-%m-%d") -> pl.Expr:
    """A date string (e.g. H&M t_dat 2018-09-20) -> that day's 00:00 UTC in unix seconds (as a string);
    an unparseable value is kept, so clean quarantines it as a bad timestamp."""
    parsed = pl.col(column).str.strip_chars().str.strptime(pl.Date, fmt, strict=False)
    seconds = parsed.cast(pl.Datetime("ms")).dt.epoch("s").cast(pl.String)
    return pl.when(parsed.is_not_null()).then(seconds).otherwise(pl.col(column)).alias(column)


def join_text(columns: list[str], separator: str = ". ") -> pl.Expr:
    """Non-empty fields joined by `separator` (an item with none gets "")."""
    if not columns:
        return pl.lit("")
    parts = [pl.when(pl.col(c).str.strip_chars() != "").then(pl.col(c).str.strip_chars()) for c in columns]
    return pl.concat_str(parts, separator=separator, ignore_nulls=True).fill_null("")


def image_path(folder: Path, name: pl.Expr, ext: str) -> pl.Expr:
    """Absolute `<folder>/<name>.<ext>`, or null for every item when the folder does not exist
    (clean checks each file; a missing one means the item has no image)."""
    if not folder.is_dir():
        return pl.lit(None, pl.String)
    return pl.lit(str(folder.resolve()) + "/") + name + pl.lit("." + ext.lstrip("."))


def fill(template: str, **values: str) -> str:
    """A layout file name with `{dataset}`-style placeholders filled in."""
    try:
        return template.format(**values)
    except (KeyError, IndexError, ValueError) as exc:
        raise TransrecError(f"layout file name {template!r}: unknown placeholder ({exc}); "
                            f"known: {', '.join('{' + k + '}' for k in values)}") from None


# --- the Westlake layouts (NineRec, MicroLens, PixelRec): pairs csv or sequences tsv, item csv, covers ---

def resolve_dataset(root: Path, lay: dict, adapter: str) -> str:
    """`layout.dataset`, or with "auto" the one name whose pairs (else sequences, else item) file is in `root`."""
    if lay["dataset"] != "auto":
        return str(lay["dataset"])
    templates = [lay[k] for k in ("pairs", "sequences", "items") if lay.get(k) and "{dataset}" in lay[k]]
    if not templates:
        return ""  # the file names do not use {dataset}
    for template in templates:
        pattern = re.compile(re.escape(template).replace(re.escape("{dataset}"), "(.+)"))
        found = sorted({m.group(1) for p in root.glob(template.replace("{dataset}", "*"))
                        if (m := pattern.fullmatch(p.relative_to(root).as_posix()))})
        if len(found) == 1:
            return found[0]
        if len(found) > 1:
            raise TransrecError(f"{root}: several {adapter} datasets ({', '.join(found)}); "
                                f"set layout.dataset to one of them")
    wanted = " or ".join(lay[k] for k in ("pairs", "sequences") if lay.get(k))
    raise TransrecError(f"{root}: no {adapter} interaction file ({wanted}) found")


def read_pairs(root: Path, lay: dict, dataset: str, quarantine: list[dict]) -> pl.DataFrame:
    """Interactions from the pairs csv, or from the sequences tsv (`pairs_format`: auto | csv | tsv)."""
    pairs = root / fill(lay["pairs"], dataset=dataset) if lay.get("pairs") else None
    seqs = root / fill(lay["sequences"], dataset=dataset) if lay.get("sequences") else None
    fmt = lay["pairs_format"]
    if fmt not in ("auto", "csv", "tsv"):
        raise TransrecError(f"layout pairs_format must be auto, csv or tsv, got {fmt!r}")
    if fmt == "auto":
        fmt = "csv" if pairs is not None and pairs.is_file() else "tsv" if seqs is not None and seqs.is_file() else None
        if fmt is None:
            raise TransrecError(f"missing interaction file: neither {pairs} nor {seqs} found")
    if fmt == "tsv":
        return read_sequences(seqs, quarantine)
    require_file(pairs, "interaction pairs file")
    wanted = {lay["user_col"]: "user", lay["item_col"]: "item", lay["time_col"]: "timestamp"}
    inter = read_columns(pairs, "interactions", list(lay["pair_columns"]), wanted, header=lay["header"],
                         quarantine=quarantine, layout_key="pair_columns")
    return to_seconds(inter, "timestamp", lay["time_unit"]).select("user", "item", "timestamp", "row")


def read_items(root: Path, lay: dict, dataset: str, quarantine: list[dict]) -> pl.DataFrame:
    """Items: id, title, text (non-empty `text_fields` joined), cover image path, no declared modality."""
    text_fields = lay["text_fields"]
    if isinstance(text_fields, str) or not isinstance(text_fields, list):
        raise TransrecError("layout text_fields must be a list of item-file columns")
    path = require_file(root / fill(lay["items"], dataset=dataset), "item file")
    fields = list(dict.fromkeys([lay["item_id_col"], lay["title_field"], *text_fields]))
    items = read_columns(path, "items", list(lay["item_columns"]), {f: f for f in fields}, header=lay["header"],
                         quarantine=quarantine, layout_key="item_columns")
    covers = root / fill(lay["covers"], dataset=dataset)
    return items.select(
        pl.col(lay["item_id_col"]).alias("item"),
        pl.col(lay["title_field"]).alias("title"),
        join_text(list(text_fields)).alias("text"),
        image_path(covers, pl.col(lay["item_id_col"]), lay["image_ext"]).alias("image"),
        pl.lit(None, pl.String).alias("modality"),
    )


def read_westlake(adapter: str, label: str, defaults: dict, root: Path, layout: dict | None) -> RawPlatform:
    """The whole read() of the NineRec / MicroLens / PixelRec adapters, which differ only in their LAYOUT."""
    lay = resolve_layout(adapter, defaults, layout)
    dataset = resolve_dataset(root, lay, label)
    quarantine: list[dict] = []
    inter = read_pairs(root, lay, dataset, quarantine)
    items = read_items(root, lay, dataset, quarantine)
    return RawPlatform(inter, items, quarantine)
