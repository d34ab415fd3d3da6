"""Timestamp sanity per source: the unit each release uses, a plausible range, counted repairs.

Amazon 2014/2018 and H&M carry seconds, Amazon 2023 milliseconds. A value in the other unit
(milliseconds in 2018 data, as some re-exports have) would otherwise be taken as the year 49,000
and sort after everything else, so it is converted and counted (`timestamp_unit_repaired`).
Values that are implausible in either unit (before 1995, after tomorrow) are skipped and counted
(`bad_value:timestamp_range`); when they are most of a file, the file is an error instead.
"""

from __future__ import annotations

import time
from typing import Iterator

import polars as pl

from mmrec.data.report import FileReport

#: Amazon opened its reviews in 1995; nothing can be reviewed after today.
EARLIEST_S = 788_918_400  # 1995-01-01 UTC
MAX_BAD_FRACTION = 0.5


def check_times(chunks: Iterator[pl.DataFrame], rep: FileReport, time_per_second: int,
                col: str = "_tfine", line_col: str = "_order") -> Iterator[pl.DataFrame]:
    """Pass chunks through with `col` (in the source's unit: 1 = s, 1000 = ms) checked.

    Rows in the wrong unit are converted to the expected one (counted repair, with the first
    line); rows plausible in neither are dropped (counted failure). Raises ValueError naming
    the file when more than half of its rows are implausible (a wrong data.source, most likely).
    """
    lo = EARLIEST_S * time_per_second
    hi = (int(time.time()) + 86_400) * time_per_second
    # The other unit: ms where seconds are expected, or seconds where ms are expected.
    factor = 1000
    n_rows = n_bad = 0
    for df in chunks:
        t = pl.col(col)
        ok = t.is_between(lo, hi, closed="left")
        if time_per_second == 1:
            fixable = (t // factor).is_between(lo, hi, closed="left")
            fixed = t // factor
        else:
            fixable = (t * factor).is_between(lo, hi, closed="left")
            fixed = t * factor
        df = df.with_columns(_ok=ok, _fix=~ok & fixable)
        n_fix = int(df["_fix"].sum())
        if n_fix:
            first = df.filter(pl.col("_fix"))[line_col][0]
            unit = "milliseconds" if time_per_second == 1 else "seconds"
            rep.repair(int(first), "timestamp_unit_repaired",
                       f"{n_fix} rows in {unit} where {'seconds' if time_per_second == 1 else 'milliseconds'} "
                       f"are expected; first at line {first}", n=n_fix)
            df = df.with_columns(pl.when(pl.col("_fix")).then(fixed).otherwise(t).alias(col))
        bad = ~(pl.col("_ok") | pl.col("_fix"))
        nb = int(df.select(bad.sum()).item())
        n_rows += df.height
        if nb:
            first = df.filter(bad)
            rep.fail(int(first[line_col][0]), "bad_value:timestamp_range",
                     f"{nb} rows outside 1995..today in either unit; first at line "
                     f"{first[line_col][0]} ({col}={first[col][0]})", n=nb)
            n_bad += nb
            df = df.filter(~bad)
        yield df.drop("_ok", "_fix")
    if n_rows and n_bad > MAX_BAD_FRACTION * n_rows:
        raise ValueError(f"{rep.path}: {n_bad:,} of {n_rows:,} timestamps are implausible "
                         f"(before 1995 or in the future, in seconds and in milliseconds); "
                         "check data.source (Amazon 2023 uses milliseconds) and the file")
