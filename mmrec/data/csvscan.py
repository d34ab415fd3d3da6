"""Lazy, batched CSV reading with counted row failures (for multi-GB transaction files)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import polars as pl

from mmrec.data.report import FileReport

BATCH_ROWS = 1_000_000


def scan_csv_strings(path: Path, columns: list[str], has_header: bool) -> pl.LazyFrame:
    """Every column as a string (ids keep their leading zeros), ragged rows tolerated, plus
    `_row`: the 1-based line number of the record (assuming no quoted newlines).

    Bytes that are not UTF-8 become U+FFFD (counted per row by `iter_batches`) instead of
    failing the whole file; a byte-order mark is dropped; an empty file is an error.
    """
    if Path(path).stat().st_size == 0:
        raise ValueError(f"{path}: empty file (0 bytes); re-download it or fix data.raw_dir")
    if has_header:
        header = pl.scan_csv(path, n_rows=0, infer_schema=False,
                             encoding="utf8-lossy").collect_schema().names()
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header has {header}")
        lf = pl.scan_csv(path, infer_schema=False, truncate_ragged_lines=True, encoding="utf8-lossy")
    else:
        lf = pl.scan_csv(path, has_header=False, new_columns=columns, encoding="utf8-lossy",
                         schema={c: pl.String for c in columns}, truncate_ragged_lines=True)
    return lf.with_row_index("_row", offset=2 if has_header else 1)


def iter_batches(lf: pl.LazyFrame, rep: FileReport, required: dict[str, str],
                 line_col: str = "_order", batch_rows: int = BATCH_ROWS) -> Iterator[pl.DataFrame]:
    """Stream `lf` in batches; drop and count rows where a `required` column is null/empty.

    `required` maps column -> failure reason (e.g. `"timestamp": "bad_value:t_dat"`);
    `line_col` holds the line number quoted in failure examples.
    """
    try:
        batches = lf.collect_batches(chunk_size=batch_rows)
    except AttributeError:  # older polars: one batch
        batches = iter([lf.collect(engine="streaming")])
    for df in batches:
        rep.rows_read += df.height
        lossy = pl.any_horizontal(pl.col(pl.String).str.contains("\ufffd", literal=True))
        n_lossy = df.select(lossy.sum()).item()
        if n_lossy:  # the rows are kept (one bad byte should not cost a purchase), but counted
            first = df.filter(lossy)[line_col][0]
            rep.repair(int(first), "non_utf8_replaced",
                       f"{n_lossy} rows in this batch; first at line {first}", n=n_lossy)
        for col, reason in required.items():
            bad = pl.col(col).is_null() | (pl.col(col).cast(pl.String) == "")
            n_bad = df.select(bad.sum()).item()
            if n_bad:
                first = df.filter(bad)[line_col][0]
                rep.fail(int(first), reason, f"{n_bad} rows in this batch; first at line {first}",
                         n=n_bad)
                df = df.filter(~bad)
        rep.rows_parsed += df.height
        yield df
    if rep.rows_read == 0:
        raise ValueError(f"{rep.path}: no data rows (the file is empty or holds only a header); "
                         "re-download it or fix data.raw_dir")
