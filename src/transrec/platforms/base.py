"""What every platform adapter returns, and the robust table readers they share.

An adapter reads one platform's published layout and returns a `RawPlatform`: string-typed
interactions and items plus the rows it could not parse (quarantined with a reason). Typing,
de-duplication, ordering and filtering happen once, in `transrec.data.clean`, for every adapter.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl

from transrec.errors import TransrecError

INTERACTION_COLUMNS = ("user", "item", "timestamp", "row")
ITEM_COLUMNS = ("item", "title", "text", "image", "modality")
QUARANTINE_SCHEMA = {"table": pl.String, "file": pl.String, "line": pl.Int64, "reason": pl.String, "raw": pl.String}


@dataclass
class RawPlatform:
    """One platform as its adapter read it.

    interactions: user, item (str keys), timestamp (str or int; cast in clean), row (source order).
    items: item (str key), title (str), text (str, may be empty), image (absolute path or null),
        modality (str or null: a modality the source itself declares, e.g. the synthetic world).
    quarantine: rows that could not be parsed: table (interactions | items), file, line, reason, raw text.
    drops: rows the adapter left out on purpose (e.g. ratings below a threshold), by reason.
    """

    interactions: pl.DataFrame
    items: pl.DataFrame
    quarantine: list[dict] = field(default_factory=list)
    drops: dict[str, int] = field(default_factory=dict)

    def quarantine_frame(self) -> pl.DataFrame:
        return pl.DataFrame(self.quarantine, schema=QUARANTINE_SCHEMA)


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise TransrecError(f"missing {what}: {path} not found")
    return path


def read_table(
    path: Path,
    table: str,
    columns: list[str],
    *,
    separator: str = ",",
    has_header: bool = True,
    encoding: str = "utf-8",
    quarantine: list[dict],
    rename: dict[str, str] | None = None,
) -> pl.DataFrame:
    """Read a delimited file into string columns, quarantining rows with the wrong number of fields.

    `table` (interactions | items) tags quarantined rows, so stats can account for every row per table.
    `columns` are the names to give the fields (no header) or the header names to keep (header).
    Every kept row carries `row`, its 0-based data-row index in the file (the source order).
    Multi-character separators (MovieLens-1M '::') are split by hand; everything else goes through
    the csv module so quoted fields with separators inside (H&M detail_desc) stay whole.
    """
    raw = path.read_bytes()
    try:
        text = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise TransrecError(f"{path}: not {encoding} text ({exc.reason} at byte {exc.start}); "
                            "set the platform's layout.encoding (e.g. latin-1)") from None
    csv.field_size_limit(1 << 24)  # long descriptions are fine; a runaway quote is caught below
    if len(separator) == 1:
        # strict: a quote still open at the end of the file is an error, not one giant silent field
        reader = csv.reader(io.StringIO(text), delimiter=separator, strict=True)
        # (physical line where the record ends, fields): quoted fields may span lines
        rows = ((reader.line_num, fields) for fields in reader)
    else:
        rows = ((n, line.split(separator)) for n, line in enumerate(text.splitlines(), start=1))
    header: list[str] | None = None
    out: dict[str, list] = {c: [] for c in columns}
    out["row"] = []
    positions: list[int] = list(range(len(columns)))
    n_fields = len(columns)
    data_row = 0
    line_no = previous = 0
    try:
        for line_no, fields in rows:
            started, previous = previous + 1, line_no
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue  # blank line: nothing lost
            if has_header and header is None:
                header = [h.strip().lstrip("\ufeff") for h in fields]
                missing = [c for c in columns if c not in header]
                if missing:
                    raise TransrecError(f"{path}: header lacks column(s) {', '.join(missing)} (has: {', '.join(header)})")
                positions = [header.index(c) for c in columns]
                n_fields = len(header)
                continue
            if len(fields) != n_fields:
                if line_no - started > 1:  # one broken record swallowed many lines: say so, lose nothing quietly
                    raise TransrecError(f"{path}: line {started}: a quoted field is never closed "
                                        f"(it runs to line {line_no}); fix the quoting")
                quarantine.append({"table": table, "file": path.name, "line": line_no,
                                   "reason": f"expected {n_fields} fields, got {len(fields)}",
                                   "raw": separator.join(fields)[:500]})
                data_row += 1
                continue
            for name, pos in zip(columns, positions):
                out[name].append(fields[pos].strip())
            out["row"].append(data_row)
            data_row += 1
    except csv.Error as exc:
        raise TransrecError(f"{path}: line {previous + 1}: {exc} (a quoted field that is never closed?)") from None
    frame = pl.DataFrame(out, schema={**{c: pl.String for c in columns}, "row": pl.Int64})
    return frame.rename(rename) if rename else frame
