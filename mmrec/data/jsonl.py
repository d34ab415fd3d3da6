"""JSON-lines (and Python-dict-literal-lines) parsing with per-line failure accounting.

Interaction files go through `scan_json_columns`: each chunk is parsed by polars in one call
(fast path); only a chunk that has a problem (bad JSON, non-UTF-8 bytes, blank lines, a missing
field, a mistyped value, a key that may appear twice in a line) is re-parsed line by line, so
every skipped row is counted with its line number and reason while clean files run at polars
speed.

A key repeated within one line takes its last value, as `json.loads` (and `ast.literal_eval`
for meta lines) does, whatever the other lines of its chunk hold; in interaction files a
repeated field is also counted as a repair (`duplicate_key:<field>`).
"""

from __future__ import annotations

import ast
import io
import json
import re
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl

from mmrec.data.lines import CHUNK_BYTES, iter_line_chunks
from mmrec.data.report import FileReport, ReportEvents

Parser = Callable[[str], Any]
# ast's errors quote node reprs with their memory address ("<ast.Call object at 0x7f..>"):
# dropped, so the report of the same file is the same bytes in every run.
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def normalise_id(raw: str) -> str:
    """The one id normalisation used for every file (meta, reviews, ratings, H&M): surrounding
    whitespace and byte-order marks stripped, so " A1 " in reviews joins "A1" in meta."""
    return raw.strip().strip("\ufeff").strip()


def normalise_id_expr(col: str) -> pl.Expr:
    """`normalise_id` as a polars expression (same characters stripped)."""
    return pl.col(col).str.strip_chars().str.strip_chars("\ufeff").str.strip_chars()


def parse_literal(text: str) -> Any:
    """A Python dict literal (Amazon 2014 meta); `ast.literal_eval` never executes code."""
    return ast.literal_eval(text)


def _decode(raw: bytes, line: int, rep: FileReport | ReportEvents) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        # Keep the row: one bad byte in a title should not cost the item. Counted as a repair.
        rep.repair(line, "non_utf8_replaced", str(err))
        return raw.decode("utf-8", errors="replace")


def iter_records(path: str | Path, rep: FileReport, parser: Parser = json.loads,
                 chunk_bytes: int = CHUNK_BYTES) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield `(line_number, record)` for each line that parses to a dict; count the rest."""
    for first, blob in iter_line_chunks(path, rep, chunk_bytes):
        yield from records_in_blob(blob, first, rep, parser)


def records_in_blob(blob: bytes, first: int, rep: FileReport | ReportEvents,
                    parser: Parser) -> Iterator[tuple[int, dict[str, Any]]]:
    """`iter_records` over one chunk of whole lines, the first numbered `first`."""
    for i, raw in enumerate(blob.split(b"\n")[:-1]):  # blob ends with "\n"
        line = first + i
        if not raw.strip():
            continue
        rep.rows_read += 1
        text = _decode(raw, line, rep)
        try:
            rec = parser(text)
        except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError, OverflowError) as err:
            rep.fail(line, "malformed", _ADDRESS.sub("", f"{type(err).__name__}: {err}"))
            continue
        if not isinstance(rec, dict):
            rep.fail(line, "not_an_object", f"got {type(rec).__name__}")
            continue
        yield line, rec


class _Record(dict):
    """A JSON object that knows which of its keys appeared more than once (the last value wins)."""

    duplicates: frozenset[str] = frozenset()


def _record(pairs: list[tuple[str, Any]]) -> _Record:
    rec = _Record(pairs)
    if len(rec) != len(pairs):
        seen: set[str] = set()
        rec.duplicates = frozenset(k for k, _ in pairs if k in seen or seen.add(k))
    return rec


def loads_noting_duplicates(text: str) -> Any:
    """`json.loads` (a repeated key takes its last value) whose objects are `_Record`s."""
    return json.loads(text, object_pairs_hook=_record)


def _coerce(value: Any, dtype: pl.DataType) -> Any:
    """Python-side equivalent of the fast path's typing; raises ValueError when impossible."""
    if value is None:
        return None
    if dtype == pl.Int64:
        if isinstance(value, bool):
            raise ValueError(f"boolean {value!r} is not a timestamp")
        try:
            # int(inf) raises OverflowError, int(nan) ValueError: both are this row's problem
            out = int(value) if isinstance(value, (int, float)) else int(str(value).strip())
        except OverflowError as err:
            raise ValueError(str(err)) from None
        if not INT64_MIN <= out <= INT64_MAX:
            raise ValueError("integer out of the int64 range")
        return out
    if isinstance(value, (dict, list)):
        raise ValueError(f"expected a scalar, got {type(value).__name__}")
    return normalise_id(str(value))


def scan_json_columns(path: str | Path, rep: FileReport, schema: dict[str, pl.DataType],
                      required: list[str],
                      chunk_bytes: int = CHUNK_BYTES) -> Iterator[pl.DataFrame]:
    """Yield DataFrames with the `schema` columns plus `_line` (1-based line number).

    Rows lacking a `required` field, or whose value cannot take its dtype, are skipped and
    counted (`missing_field:<key>`, `bad_value:<key>`). String columns are ids: normalised with
    `normalise_id`; empty ones count as missing.
    """
    out_schema = {**schema, "_line": pl.Int64}
    for first, blob in iter_line_chunks(path, rep, chunk_bytes):
        df = _fast_chunk(blob, first, schema, required)
        if df is not None:
            rep.rows_read += df.height
            rep.rows_parsed += df.height
            yield df
            continue
        rows: dict[str, list[Any]] = {k: [] for k in out_schema}
        for line, rec in records_in_blob(blob, first, rep, loads_noting_duplicates):
            for key in schema:
                if key in rec.duplicates:
                    rep.repair(line, f"duplicate_key:{key}",
                               f"{key!r} appears more than once; its last value {rec[key]!r} is used")
            vals = {}
            bad = None
            for key, dtype in schema.items():
                try:
                    vals[key] = _coerce(rec.get(key), dtype)
                except (ValueError, TypeError) as err:
                    bad = (f"bad_value:{key}", f"{key}={rec.get(key)!r}: {err}")
                    break
                if key in required and (vals[key] is None or vals[key] == ""):
                    bad = (f"missing_field:{key}", f"no usable {key!r} in {sorted(rec)[:8]}")
                    break
            if bad is not None:
                rep.fail(line, *bad)
                continue
            for key in schema:
                rows[key].append(vals[key])
            rows["_line"].append(line)
            rep.rows_parsed += 1
        yield pl.DataFrame(rows, schema=out_schema)


def _fast_chunk(blob: bytes, first: int, schema: dict[str, pl.DataType],
                required: list[str]) -> pl.DataFrame | None:
    """Parse a whole chunk with polars; None when anything needs line-level attention."""
    n_lines = blob.count(b"\n")
    try:
        df = pl.read_ndjson(io.BytesIO(blob), schema=schema)
    except Exception:  # noqa: BLE001 - any parse problem means: go line by line
        return None
    if df.height != n_lines:  # polars skips blank lines: line numbers would shift
        return None
    # polars keeps a repeated key's first value, json.loads its last. A line repeating a field
    # has more quoted occurrences of its name than the chunk has values for it: such a chunk
    # goes line by line (a name that also appears as a value only costs that detour).
    if any(blob.count(f'"{k}"'.encode()) > df[k].count() for k in schema):
        return None
    df = df.with_columns(normalise_id_expr(k) for k, t in schema.items() if t == pl.String)
    bad = pl.any_horizontal([pl.col(k).is_null() | (pl.col(k).cast(pl.String) == "")
                             for k in required])
    if df.select(bad.any()).item():
        return None
    return df.with_columns((pl.int_range(0, df.height, dtype=pl.Int64) + first).alias("_line"))
