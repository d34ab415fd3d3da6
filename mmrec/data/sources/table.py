"""`data.source: table`: any dataset shaped as two tables, read without code.

- an interactions table (CSV, TSV, optionally gzipped, or Parquet): one row per interaction with a
  user column, an item column, a time column (integer seconds or milliseconds, or a date/time
  such as 2021-03-04 or 2021-03-04T10:00:00) and optionally a rating column;
- an items table (same formats): one row per item with the item column, the text columns (joined
  in the order given into the item text) and optionally an image column holding each image's
  path relative to `image_dir` (itself relative to data.raw_dir).

Column and file names are the settings under `data.table` (TableParams); for example MovieLens'
ratings.csv + movies.csv:

    data:
      source: table
      raw_dir: data/raw/ml-1m
      table: {interactions: ratings.csv, items: movies.csv, user: userId, item: movieId,
              time: timestamp, text: [title, genres]}

Rows without a user, item or time, times that cannot be read, ratings below `min_rating`,
items without an id or listed twice, and image paths that are missing or point outside
data.raw_dir are counted in ingest/report.json, never dropped silently.

This module is also the template for a new reader: it registers itself (last lines), declares its
settings (TableParams) and imports polars only inside `read_table` (see mmrec/data/sources/).
"""

from __future__ import annotations

import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal, Optional

from pydantic import Field, field_validator

from mmrec.data.sources import ReadRequest, Source, SourceData, register_source
from mmrec.schema import StrictParams

if TYPE_CHECKING:
    import polars as pl

    from mmrec.data.report import FileReport

SUFFIXES = (".csv", ".csv.gz", ".tsv", ".tsv.gz", ".parquet")
#: Date and date-time layouts of the time column (a trailing Z is dropped; UTC is assumed).
TIME_FORMATS = ("%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d")


class TableParams(StrictParams):
    """Settings of `data.table`: file names (relative to data.raw_dir) and column names."""

    interactions: str = "interactions.csv"
    items: str = "items.csv"
    user: str = "user_id"                 # interactions: who
    item: str = "item_id"                 # interactions and items: what (the join key)
    time: str = "timestamp"               # interactions: when
    time_unit: Literal["s", "ms"] = "s"   # of integer times (dates and date-times need none)
    rating: Optional[str] = None          # interactions: an optional rating column...
    min_rating: Optional[float] = None    # ...and the least rating kept (None: keep every row)
    text: list[str] = Field(default_factory=lambda: ["title"], min_length=1)   # items: text columns
    image: Optional[str] = None           # items: image path column (None: no images)
    image_dir: str = "."                  # folder the image paths are relative to, under raw_dir

    @field_validator("interactions", "items")
    @classmethod
    def _known_format(cls, v: str) -> str:
        if not v.lower().endswith(SUFFIXES):
            raise ValueError(f"{v!r}: expected a file ending in {', '.join(SUFFIXES)}")
        return v

    @field_validator("image_dir")
    @classmethod
    def _inside_raw_dir(cls, v: str) -> str:
        if Path(v).is_absolute() or ".." in Path(v).parts:
            raise ValueError(f"{v!r}: must be a folder inside data.raw_dir (relative, no '..')")
        return v

    @field_validator("min_rating")
    @classmethod
    def _needs_rating(cls, v: Optional[float], info) -> Optional[float]:
        if v is not None and info.data.get("rating") is None:
            raise ValueError("min_rating needs `rating` (the rating column's name)")
        return v


def _scan(path: Path, columns: list[str]) -> "pl.LazyFrame":
    """`columns` of a CSV/TSV/Parquet file as strings, plus `_row` (1-based data row; the CSV line
    for files without quoted newlines); a missing column is an error naming the file."""
    import polars as pl

    from mmrec.data.csvscan import scan_csv_strings

    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (data.table names it, relative to data.raw_dir)")
    if path.name.lower().endswith(".parquet"):
        lf = pl.scan_parquet(path)
        names = lf.collect_schema().names()
        missing = [c for c in columns if c not in names]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; columns are {names}")
        return lf.select([pl.col(c).cast(pl.String) for c in columns]).with_row_index("_row", offset=1)
    if ".tsv" in path.name.lower():
        header = pl.scan_csv(path, separator="\t", n_rows=0, infer_schema=False).collect_schema().names()
        missing = [c for c in columns if c not in header]
        if missing:
            raise ValueError(f"{path}: missing column(s) {missing}; header has {header}")
        lf = pl.scan_csv(path, separator="\t", infer_schema=False, truncate_ragged_lines=True,
                         encoding="utf8-lossy", quote_char=None)
        return lf.select(columns).with_row_index("_row", offset=2)
    return scan_csv_strings(path, columns, has_header=True).select(*columns, "_row")


def _time_expr(col: str, unit: str) -> "pl.Expr":
    """`col` (strings) as int64 time in `unit`: integers as they are, dates and date-times
    (ISO 8601, taken as UTC) converted; unreadable values become null (counted by the caller)."""
    import polars as pl

    t = pl.col(col).str.strip_chars().str.strip_suffix("Z")
    as_int = t.cast(pl.Float64, strict=False).cast(pl.Int64, strict=False)
    return pl.coalesce(as_int, *[t.str.to_datetime(f, strict=False, time_unit="ms").dt.epoch(unit)
                                 for f in TIME_FORMATS])


def _iter_interactions(path: Path, o: TableParams, rep: "FileReport") -> Iterator["pl.DataFrame"]:
    import polars as pl

    from mmrec.data.csvscan import iter_batches
    from mmrec.data.jsonl import normalise_id_expr

    cols = [o.user, o.item, o.time] + ([o.rating] if o.rating else [])
    lf = _scan(path, list(dict.fromkeys(cols))).select(
        normalise_id_expr(o.user).alias("user_id"), normalise_id_expr(o.item).alias("item_id"),
        _time_expr(o.time, o.time_unit).alias("_tfine"),
        *([pl.col(o.rating).str.strip_chars().cast(pl.Float64, strict=False).alias("_rating")] if o.rating else []),
        pl.col("_row").cast(pl.Int64).alias("_order"))
    required = {"user_id": f"missing_field:{o.user}", "item_id": f"missing_field:{o.item}",
                "_tfine": f"bad_value:{o.time}"}
    if o.min_rating is not None:
        required["_rating"] = f"bad_value:{o.rating}"
    for df in iter_batches(lf, rep, required):
        if o.min_rating is not None:
            low = pl.col("_rating") < o.min_rating
            n_low = int(df.select(low.sum()).item())
            if n_low:
                first = int(df.filter(low)["_order"][0])
                rep.fail(first, "rating_below_min_rating",
                         f"{n_low} rows below data.table.min_rating={o.min_rating:g}; first at row {first}", n=n_low)
                rep.rows_parsed -= n_low
                df = df.filter(~low)
        yield df.select("user_id", "item_id", "_tfine", "_order")


def _read_items(path: Path, o: TableParams, req: ReadRequest) -> "pl.DataFrame":
    """item_id, text, has_text, image_path, image_url (null) and the text columns, one row per item."""
    import polars as pl

    from mmrec.data.images import local_image_ref
    from mmrec.data.jsonl import normalise_id_expr
    from mmrec.data.text import FIELD_SEP, cap_text, clean_text

    rep = req.report.file(str(path))
    max_chars = req.data.text.max_chars
    cols = list(dict.fromkeys([o.item, *o.text] + ([o.image] if o.image else [])))
    df = _scan(path, cols).collect()
    rep.rows_read += df.height
    df = df.with_columns(normalise_id_expr(o.item).alias("item_id"))
    for reason, bad in ((f"missing_field:{o.item}", pl.col("item_id").is_null() | (pl.col("item_id") == "")),
                        ("duplicate_id", pl.col("item_id").is_duplicated() & ~pl.col("item_id").is_first_distinct())):
        n_bad = int(df.select(bad.sum()).item())
        if n_bad:
            first = df.filter(bad)
            rep.fail(int(first["_row"][0]), reason, f"{n_bad} rows; first: {first['item_id'][0]!r}", n=n_bad)
            df = df.filter(~bad)
    rep.rows_parsed += df.height
    clean = [pl.col(c).fill_null("").map_elements(clean_text, return_dtype=pl.String).alias(c) for c in o.text]
    df = df.with_columns(clean)
    text = (pl.concat_list([pl.when(pl.col(c) != "").then(pl.col(c)) for c in o.text])
            .list.drop_nulls().list.join(FIELD_SEP).map_elements(lambda t: cap_text(t, max_chars),
                                                                   return_dtype=pl.String))
    df = df.with_columns(text=text, _img=pl.lit(None, dtype=pl.String))
    if o.image:
        paths: list[str | None] = []
        for row, ref in zip(df["_row"].to_list(), df[o.image].to_list()):
            if not ref or not ref.strip():
                paths.append(None)
                continue
            # Checked against raw_dir itself, so a symlinked image_dir cannot lead outside it.
            rel, refused = local_image_ref(posixpath.join(Path(o.image_dir).as_posix(), ref.strip()), req.raw_dir)
            if refused:
                rep.repair(int(row), refused, f"{ref!r}: image dropped, item kept")
            paths.append(f"{req.image_prefix}/{posixpath.normpath(rel)}" if rel else None)
        df = df.with_columns(_img=pl.Series(paths, dtype=pl.String))
    keep = [c for c in o.text if c not in ("item_id", "text", "image_path", "image_url", "has_text")]
    return df.select("item_id", "text", pl.col("_img").alias("image_path"),
                     pl.lit(None, dtype=pl.String).alias("image_url"),
                     pl.col("text").str.len_chars().gt(0).alias("has_text"), *keep)


def read_table(req: ReadRequest) -> SourceData:
    """The items table and the lazy interaction chunks named by `data.table`."""
    from mmrec.data.timestamps import check_times

    o = req.options if isinstance(req.options, TableParams) else TableParams()
    items = _read_items(req.raw_dir / o.items, o, req)
    path = req.raw_dir / o.interactions
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found (data.table.interactions, relative to data.raw_dir)")
    rep = req.report.file(str(path))
    tps = 1000 if o.time_unit == "ms" else 1
    return SourceData(items, check_times(_iter_interactions(path, o, rep), rep, tps), time_per_second=tps,
                      extra={"table": o.model_dump(mode="json")})


register_source(Source("table", read_table, params=TableParams,
                       summary="an interactions table + an items table (CSV/TSV/Parquet), columns named in data.table"))
