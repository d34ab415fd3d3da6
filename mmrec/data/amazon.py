"""Readers for the Amazon review datasets: 2014 (McAuley), 2018 (Ni) and 2023 (Hou).

File names, per source (`<Cat>` = `data.category`, or the only category present):
- amazon2014: reviews `reviews_<Cat>_5.json(.gz)` / `reviews_<Cat>.json(.gz)`, or ratings-only
  `ratings_<Cat>.csv` (user,item,rating,timestamp); meta `meta_<Cat>.json(.gz)` with one
  Python dict literal per line.
- amazon2018: reviews `<Cat>_5.json(.gz)` / `<Cat>.json(.gz)`, or ratings-only `<Cat>.csv`
  (item,user,rating,timestamp); meta `meta_<Cat>.json(.gz)` (JSON lines).
- amazon2023: reviews `<Cat>.jsonl(.gz)` keyed by `parent_asin`, timestamps in milliseconds;
  meta `meta_<Cat>.jsonl(.gz)`.
Every JSON file may end in .json, .json.gz, .jsonl or .jsonl.gz.

Images: `<raw_dir>/images/<safe asin>.jpg` is used when present; otherwise the meta's first
image URL is kept for the downloader. A URL that is not http(s) is read as a path relative to
`raw_dir` (the embedded sample references its shipped JPEGs that way) and used only when it
resolves inside `raw_dir`, symlinks included; anything else is a counted skip naming the line.
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import json
import multiprocessing
import sys
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import polars as pl

from mmrec.data.csvscan import iter_batches, scan_csv_strings
from mmrec.data.images import list_local_images, local_image_ref, safe_name
from mmrec.data.jsonl import (
    normalise_id,
    normalise_id_expr,
    parse_literal,
    records_in_blob,
    scan_json_columns,
)
from mmrec.data.lines import iter_line_chunks
from mmrec.data.report import FileReport, IngestReport, ReportEvents
from mmrec.data.text import cap_text, clean_text, compose_text
from mmrec.data.timestamps import check_times

JSON_EXTS = (".json", ".json.gz", ".jsonl", ".jsonl.gz")
TEXT_FIELDS = ("title", "brand", "category", "description", "features")


@dataclass(frozen=True)
class AmazonFormat:
    """What differs between the Amazon releases."""

    source: str
    review_stems: tuple[str, ...]  # tried in order, `{cat}` filled in
    csv_stem: str | None
    csv_columns: tuple[str, ...]  # column order of the ratings-only CSV
    meta_stem: str
    user_key: str
    item_key: str
    time_key: str
    time_per_second: int  # 1000 for millisecond timestamps
    meta_id_key: str
    meta_parser: Callable[[str], Any]


FORMATS = {
    "amazon2014": AmazonFormat("amazon2014", ("reviews_{cat}_5", "reviews_{cat}"), "ratings_{cat}",
                               ("user", "item", "rating", "timestamp"), "meta_{cat}",
                               "reviewerID", "asin", "unixReviewTime", 1, "asin", parse_literal),
    "amazon2018": AmazonFormat("amazon2018", ("{cat}_5", "{cat}"), "{cat}",
                               ("item", "user", "rating", "timestamp"), "meta_{cat}",
                               "reviewerID", "asin", "unixReviewTime", 1, "asin", json.loads),
    "amazon2023": AmazonFormat("amazon2023", ("{cat}",), None, (), "meta_{cat}",
                               "user_id", "parent_asin", "timestamp", 1000, "parent_asin",
                               json.loads),
}


def _find(raw_dir: Path, stem: str) -> Path | None:
    for ext in JSON_EXTS:
        p = raw_dir / f"{stem}{ext}"
        if p.is_file():
            return p
    return None


def resolve_category(raw_dir: Path, category: str | None) -> str:
    """The category stem: the configured one, or the only `meta_<Cat>.*` file in raw_dir."""
    if category:
        return category
    cats = sorted({p.name[len("meta_"):].split(".")[0] for p in raw_dir.glob("meta_*")
                   if p.name.endswith(JSON_EXTS)})
    if not cats:
        raise FileNotFoundError(f"{raw_dir}: no meta_<Category>.json(.gz|l|l.gz) file found; "
                                "check data.raw_dir and data.source")
    if len(cats) > 1:
        raise ValueError(f"{raw_dir}: several categories present ({', '.join(cats)}); "
                         "set data.category to one of them")
    return cats[0]


@dataclass
class AmazonFiles:
    reviews: Path
    is_csv: bool
    meta: Path


def locate_files(fmt: AmazonFormat, raw_dir: Path, category: str) -> AmazonFiles:
    """Find the review (or ratings CSV) and meta files; the error lists the names tried."""
    tried: list[str] = []
    reviews, is_csv = None, False
    for stem in fmt.review_stems:
        s = stem.format(cat=category)
        tried += [s + e for e in JSON_EXTS]
        reviews = reviews or _find(raw_dir, s)
    if reviews is None and fmt.csv_stem:
        p = raw_dir / (fmt.csv_stem.format(cat=category) + ".csv")
        tried.append(p.name)
        if p.is_file():
            reviews, is_csv = p, True
    if reviews is None:
        raise FileNotFoundError(f"{raw_dir}: no {fmt.source} interaction file for category "
                                f"{category!r}; tried {', '.join(tried)}")
    meta = _find(raw_dir, fmt.meta_stem.format(cat=category))
    if meta is None:
        raise FileNotFoundError(f"{raw_dir}: no meta file meta_{category}.json(.gz|l|l.gz)")
    return AmazonFiles(reviews, is_csv, meta)


# ----------------------------------------------------------------------------------- meta

def _image_url(fmt: AmazonFormat, rec: dict[str, Any]) -> str | None:
    if fmt.source == "amazon2014":
        url = rec.get("imUrl")
        return url if isinstance(url, str) and url.strip() else None
    if fmt.source == "amazon2018":
        for key in ("imageURLHighRes", "imageURL"):
            urls = rec.get(key)
            if isinstance(urls, str):
                urls = [urls]
            for u in urls or []:
                if isinstance(u, str) and u.strip():
                    return u.strip()
        return None
    images = rec.get("images") or []
    # 2023: prefer the MAIN variant, then any; large before hi_res (hi_res is often null).
    ranked = sorted((im for im in images if isinstance(im, dict)),
                    key=lambda im: 0 if im.get("variant") == "MAIN" else 1)
    for im in ranked:
        for key in ("large", "hi_res", "thumb"):
            u = im.get(key)
            if isinstance(u, str) and u.strip():
                return u.strip()
    return None


def _meta_fields(fmt: AmazonFormat, rec: dict[str, Any]) -> dict[str, str]:
    if fmt.source == "amazon2014":
        return {"title": clean_text(rec.get("title")), "brand": clean_text(rec.get("brand")),
                "category": clean_text(rec.get("categories")),
                "description": clean_text(rec.get("description"), sep=" "), "features": ""}
    if fmt.source == "amazon2018":
        return {"title": clean_text(rec.get("title")), "brand": clean_text(rec.get("brand")),
                "category": clean_text(rec.get("category")),
                "description": clean_text(rec.get("description"), sep=" "),
                "features": clean_text(rec.get("feature"), sep=" ")}
    cats = rec.get("categories") or rec.get("main_category")
    return {"title": clean_text(rec.get("title")), "brand": clean_text(rec.get("store")),
            "category": clean_text(cats), "description": clean_text(rec.get("description"), sep=" "),
            "features": clean_text(rec.get("features"), sep=" ")}


META_CHUNK_BYTES = 2 << 20  # small enough that a few workers share even a modest meta file
MetaRow = tuple[int, str, str, str, str, str, str, "str | None"]


def clean_meta_chunk(source: str, blob: bytes, first: int, fields: list[str],
                     max_chars: int) -> tuple[ReportEvents, list[MetaRow]]:
    """Parse and clean the meta lines in `blob` (line `first` on): the per-line work of
    `read_amazon_meta`, which needs nothing from other lines, so worker processes can share it.

    Returns the report calls it made (lines in order) and one row per usable record:
    (line, item_id, text, title, brand, category, description, image url).
    """
    fmt = FORMATS[source]
    log = ReportEvents()
    rows: list[MetaRow] = []
    for line, rec in records_in_blob(blob, first, log, fmt.meta_parser):
        raw_id = rec.get(fmt.meta_id_key)
        item_id = "" if raw_id is None else normalise_id(str(raw_id))
        if item_id == "":
            log.fail(line, f"missing_field:{fmt.meta_id_key}", f"keys: {sorted(rec)[:8]}")
            continue
        f = _meta_fields(fmt, rec)
        rows.append((line, item_id, compose_text(f, fields, max_chars),
                     *(cap_text(f[k], max_chars) for k in ("title", "brand", "category", "description")),
                     _image_url(fmt, rec)))
    return log, rows


def _meta_chunks(fmt: AmazonFormat, path: Path, rep: FileReport, fields: list[str], max_chars: int,
                 workers: int, chunk_bytes: int) -> Iterator[tuple[ReportEvents, list[MetaRow]]]:
    """`clean_meta_chunk` over the file's chunks, in file order, in `workers` processes when the
    file has more than one chunk. The report calls of reading itself (a truncated gzip) are
    replayed into `rep` where a serial read would make them; a chunk's own calls are returned."""
    log = ReportEvents(allow_truncated=rep.allow_truncated)

    def pulled() -> Iterator[tuple[ReportEvents, int, bytes | None]]:
        for first, blob in iter_line_chunks(path, log, chunk_bytes):
            yield log.drain(), first, blob
        yield log.drain(), 0, None  # what reading reported after the last chunk

    work = functools.partial(clean_meta_chunk, fmt.source, fields=fields, max_chars=max_chars)
    items = pulled()
    head = list(itertools.islice(items, 2))
    items = itertools.chain(head, items)
    # One chunk: a pool would cost more than it saves. Workers are forked, never spawned: spawn
    # re-runs the caller's script in every worker (a user's script without a __main__ guard
    # would ingest again); the forked workers run only json/html code, never polars' or torch's
    # thread pools, which do not survive a fork. Linux only (macOS frameworks break after fork).
    parallel = workers >= 2 and head[-1][2] is not None and sys.platform.startswith("linux")
    # Bounded read-ahead, so memory stays a few chunks; none when serial, so reading's own report
    # calls are replayed exactly where a plain loop would make them.
    read_ahead = 2 * workers if parallel else 0
    with (ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) if parallel
          else contextlib.nullcontext()) as pool:
        pending: collections.deque[tuple[ReportEvents, Future | None]] = collections.deque()

        def done(keep: int) -> Iterator[tuple[ReportEvents, list[MetaRow]]]:
            while len(pending) > keep:
                before, job = pending.popleft()
                before.replay(rep)
                if job is not None:
                    yield job.result()

        for before, first, blob in items:
            if blob is None:
                job = None
            elif pool is not None:
                job = pool.submit(work, blob, first)
            else:
                job = Future()
                job.set_result(work(blob, first))
            pending.append((before, job))
            yield from done(read_ahead)
        yield from done(0)


def read_amazon_meta(fmt: AmazonFormat, path: Path, raw_dir: Path, image_prefix: str,
                     fields: list[str], max_chars: int, report: IngestReport, *,
                     workers: int | None = None, chunk_bytes: int = META_CHUNK_BYTES) -> pl.DataFrame:
    """One row per item: item_id, text, has_text, image_path, image_url, title, brand, category,
    description. The first row of a duplicated id wins; later ones are counted as skipped.

    `image_prefix` is how `raw_dir` is written in output paths (relative to the repo root, or
    absolute); existence is checked under `raw_dir` itself. Parsing and text cleaning run in
    `workers` processes (default: the CPU budget, `mmrec.threads.budget()`) when the file is
    larger than one chunk; the table and the report are the same for any number of workers.
    """
    bad = [f for f in fields if f not in TEXT_FIELDS]
    if bad:
        raise ValueError(f"data.text.amazon_fields: unknown field(s) {bad}; known: {list(TEXT_FIELDS)}")
    rep = report.file(str(path))
    local, refused = list_local_images(raw_dir / "images", raw_dir)
    seen: set[str] = set()
    cols: dict[str, list[Any]] = {k: [] for k in ("item_id", "text", "image_path", "image_url",
                                                  "title", "brand", "category", "description")}
    if workers is None:
        from mmrec.threads import budget

        workers = budget()
    for log, rows in _meta_chunks(fmt, path, rep, fields, max_chars, workers, chunk_bytes):
        for line, item_id, text, title, brand, category, description, url in rows:
            log.replay(rep, until_line=line)  # the chunk's calls in line order with the ones below
            if item_id in seen:
                rep.fail(line, "duplicate_id", item_id)
                continue
            seen.add(item_id)
            rep.rows_parsed += 1
            name = safe_name(item_id)
            image_path = None
            if name in local:
                image_path = f"{image_prefix}/images/{name}"
            elif name in refused:
                rep.repair(line, "image_source_refused:outside_raw_dir",
                           f"images/{name} is a link to a file outside {raw_dir}; image dropped")
            if url and not url.lower().startswith(("http://", "https://")):
                if image_path is None:
                    rel, why = local_image_ref(url, raw_dir)
                    if rel is not None:
                        image_path = f"{image_prefix}/{rel}"
                    else:  # counted: the item keeps its text but has no image
                        rep.repair(line, why, f"image source {url[:150]!r} not used")
                url = None  # a local reference is never downloaded
            for key, value in (("item_id", item_id), ("text", text), ("image_path", image_path),
                               ("image_url", url), ("title", title), ("brand", brand),
                               ("category", category), ("description", description)):
                cols[key].append(value)
        log.replay(rep)
    df = pl.DataFrame(cols, schema={k: pl.String for k in cols})
    return df.with_columns(has_text=pl.col("text").str.len_chars() > 0)


# ----------------------------------------------------------------------------- interactions

INTERACTION_SCHEMA = {"user_id": pl.String, "item_id": pl.String, "_tfine": pl.Int64,
                      "_order": pl.Int64}


def iter_amazon_interactions(fmt: AmazonFormat, files: AmazonFiles,
                             report: IngestReport) -> Iterator[pl.DataFrame]:
    """Chunks of (user_id, item_id, _tfine [time in the source's unit], _order [file line]).

    Seconds are `_tfine // fmt.time_per_second`, taken after sorting so that millisecond
    order survives.
    """
    rep = report.file(str(files.reviews))
    if files.is_csv:  # ratings CSVs carry seconds in every release
        yield from check_times(_iter_ratings_csv(fmt, files.reviews, rep), rep, 1)
        return
    yield from check_times(_iter_reviews_json(fmt, files.reviews, rep), rep, fmt.time_per_second)


def _iter_reviews_json(fmt: AmazonFormat, path: Path, rep) -> Iterator[pl.DataFrame]:
    schema = {fmt.user_key: pl.String, fmt.item_key: pl.String, fmt.time_key: pl.Int64}
    for df in scan_json_columns(path, rep, schema, list(schema)):
        yield df.select(
            pl.col(fmt.user_key).alias("user_id"), pl.col(fmt.item_key).alias("item_id"),
            pl.col(fmt.time_key).alias("_tfine"), pl.col("_line").alias("_order"))


def _iter_ratings_csv(fmt: AmazonFormat, path: Path, rep) -> Iterator[pl.DataFrame]:
    """Ratings-only CSV (no header), streamed in batches; bad rows become counted skips."""
    lf = scan_csv_strings(path, list(fmt.csv_columns), has_header=False).select(
        normalise_id_expr("user").alias("user_id"),
        normalise_id_expr("item").alias("item_id"),
        pl.col("timestamp").str.strip_chars().cast(pl.Float64, strict=False)
        .cast(pl.Int64, strict=False).alias("_tfine"),
        pl.col("_row").cast(pl.Int64).alias("_order"))
    for df in iter_batches(lf, rep, {"user_id": "missing_field:user", "item_id": "missing_field:item",
                                     "_tfine": "bad_value:timestamp"}):
        yield df.select(list(INTERACTION_SCHEMA))
