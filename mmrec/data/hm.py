"""Reader for the H&M Personalized Fashion Recommendations (Kaggle) files.

`articles.csv` (article metadata, read fully with the csv module: ~100k rows, quoted commas),
`transactions_train.csv` (t_dat, customer_id, article_id, price, sales_channel_id; streamed in
batches, 31M rows in the full data), images at `images/<first 3 digits>/<article_id>.jpg`.
article_id is always a string; ids that lost their leading zero (10-digit ids read as numbers
by a spreadsheet) are zero-padded back and counted as repairs. Same-day purchases share one
timestamp (midnight UTC of t_dat) and keep their file order.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import polars as pl

from mmrec.data.csvscan import iter_batches, scan_csv_strings
from mmrec.data.images import list_local_images
from mmrec.data.jsonl import normalise_id, normalise_id_expr
from mmrec.data.report import FileReport, IngestReport
from mmrec.data.text import cap_text, clean_text, compose_text
from mmrec.data.timestamps import check_times

ID_LEN = 10
EXTRA_COLUMNS = ["detail_desc", "index_group_name", "garment_group_name"]


@dataclass
class HMFiles:
    articles: Path
    transactions: Path


def locate_hm(raw_dir: Path) -> HMFiles:
    """articles.csv and transactions_train.csv (either may be gzipped: `.csv.gz`)."""
    found = {}
    for stem in ("articles", "transactions_train"):
        for ext in (".csv", ".csv.gz"):
            if (raw_dir / f"{stem}{ext}").is_file():
                found[stem] = raw_dir / f"{stem}{ext}"
                break
        else:
            raise FileNotFoundError(f"{raw_dir}: {stem}.csv not found (data.source: hm expects "
                                    "the Kaggle layout: articles.csv, transactions_train.csv, images/)")
    return HMFiles(found["articles"], found["transactions_train"])


def hm_image_rel(article_id: str) -> str:
    """The Kaggle image path of an article, relative to the raw folder."""
    return f"images/{article_id[:3]}/{article_id}.jpg"


def _norm_id(raw: str, line: int, rep: FileReport) -> str | None:
    aid = normalise_id(raw)
    if not aid:
        return None
    if aid.isdigit() and len(aid) < ID_LEN:
        rep.repair(line, "article_id_zero_padded", aid)
        aid = aid.zfill(ID_LEN)
    return aid


def read_hm_articles(path: Path, raw_dir: Path, image_prefix: str, fields: list[str],
                     max_chars: int, report: IngestReport) -> pl.DataFrame:
    """One row per article: item_id, text, has_text, image_path, image_url (null), and the
    text fields plus detail_desc/index_group_name/garment_group_name when present."""
    rep = report.file(str(path))
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        import gzip
        import zlib

        try:
            raw = gzip.decompress(raw)
        except (EOFError, zlib.error, gzip.BadGzipFile) as err:  # all or nothing: ~100k rows
            raise ValueError(f"{path}: truncated or corrupt gzip ({type(err).__name__}: {err}); "
                             "re-download it") from None
    text = raw.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = [h.strip().lstrip("\ufeff") for h in next(reader)]
    except StopIteration:
        raise ValueError(f"{path}: empty file") from None
    if "article_id" not in header:
        raise ValueError(f"{path}: no article_id column; header is {header}")
    missing = [f for f in fields if f not in header]
    if missing:
        raise ValueError(f"data.text.hm_fields: {missing} not in {path} columns {header}")
    keep = list(dict.fromkeys(fields + [c for c in EXTRA_COLUMNS if c in header]))
    pos = {h: i for i, h in enumerate(header)}
    cols: dict[str, list[Any]] = {k: [] for k in ["item_id", "text", "image_path", *keep]}
    seen: set[str] = set()
    local_dirs: dict[str, tuple[set[str], set[str]]] = {}
    for row in reader:
        line = reader.line_num
        if not row or not any(c.strip() for c in row):
            continue
        rep.rows_read += 1
        if len(row) != len(header):
            rep.fail(line, "wrong_field_count", f"{len(row)} fields, header has {len(header)}")
            continue
        if any("\ufffd" in c for c in row):
            rep.repair(line, "non_utf8_replaced", row[pos["article_id"]])
        aid = _norm_id(row[pos["article_id"]], line, rep)
        if aid is None:
            rep.fail(line, "missing_field:article_id")
            continue
        if aid in seen:
            rep.fail(line, "duplicate_id", aid)
            continue
        seen.add(aid)
        rep.rows_parsed += 1
        vals = {k: clean_text(row[pos[k]]) for k in keep}
        sub = aid[:3]
        if sub not in local_dirs:  # one listing per image folder instead of one stat per article
            local_dirs[sub] = list_local_images(raw_dir / "images" / sub, raw_dir)
        has_img = f"{aid}.jpg" in local_dirs[sub][0]
        if f"{aid}.jpg" in local_dirs[sub][1]:
            rep.repair(line, "image_source_refused:outside_raw_dir",
                       f"{hm_image_rel(aid)} links outside {raw_dir}; image dropped")
        cols["item_id"].append(aid)
        cols["text"].append(compose_text(vals, fields, max_chars))
        cols["image_path"].append(f"{image_prefix}/{hm_image_rel(aid)}" if has_img else None)
        for k in keep:
            cols[k].append(cap_text(vals[k], max_chars))
    df = pl.DataFrame(cols, schema={k: pl.String for k in cols})
    return df.with_columns(has_text=pl.col("text").str.len_chars() > 0,
                           image_url=pl.lit(None, dtype=pl.String))


def iter_hm_transactions(path: Path, report: IngestReport) -> Iterator[pl.DataFrame]:
    """Batches of (user_id, item_id, _tfine [s, midnight UTC of t_dat], _order [line])."""
    rep = report.file(str(path))
    yield from check_times(_iter_transactions(path, rep), rep, 1)


def _iter_transactions(path: Path, rep: FileReport) -> Iterator[pl.DataFrame]:
    lf = scan_csv_strings(path, ["t_dat", "customer_id", "article_id"], has_header=True)
    aid = normalise_id_expr("article_id")
    lf = lf.select(
        normalise_id_expr("customer_id").alias("user_id"),
        pl.when(aid.str.contains(r"^\d+$") & (aid.str.len_chars() < ID_LEN))
        .then(aid.str.zfill(ID_LEN)).otherwise(aid).alias("item_id"),
        aid.alias("_raw_aid"),
        pl.col("t_dat").str.strip_chars().str.to_date("%Y-%m-%d", strict=False)
        .cast(pl.Datetime("ms")).dt.epoch("s").alias("_tfine"),
        pl.col("_row").cast(pl.Int64).alias("_order"))
    for df in iter_batches(lf, rep, {"user_id": "missing_field:customer_id",
                                     "item_id": "missing_field:article_id",
                                     "_tfine": "bad_value:t_dat"}):
        padded = df.filter(pl.col("item_id") != pl.col("_raw_aid"))
        if padded.height:
            rep.repair(int(padded["_order"][0]), "article_id_zero_padded",
                       f"{padded.height} rows", n=padded.height)
        yield df.select("user_id", "item_id", "_tfine", "_order")
