"""The ingest stage: raw files -> items, interactions, splits and a report under ingest_dir.

Outputs (`data/<name>/ingest/`):
- items.parquet: item_idx int32 (1..N; 0 is padding), item_id, text, image_path (relative to
  the repo root, or absolute when data.raw_dir is), n_train int32 (training interactions),
  has_text, has_image, then raw metadata columns (Amazon: image_url, title, brand, category,
  description; H&M: the text fields, detail_desc, index_group_name, garment_group_name).
- interactions.parquet: user_idx int32 (0..U-1), user_id, item_idx int32, timestamp int64
  (seconds), sorted by user, time, then file order.
- splits.parquet: user_idx, split, history list<int32>, target int32, cold_user, cold_target
  (layouts in mmrec/data/splits.py).
- images.parquet: item_idx, path, size, sha256 of each item's picture (mmrec/data/manifest.py),
  so that image contents are a dependency of image extraction.
- report.json: per-file rows read/parsed/failed (reasons, first examples with line numbers),
  rows dropped per filter in order, image downloads, split sizes, and the ODMT Table 1
  statistics under "stats".
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import polars as pl

from mmrec.data.filters import (
    core_filter,
    dedupe,
    item_codes,
    keep_items,
    keep_recent,
    reindex,
    stream_select,
    with_user_ids,
)
from mmrec.data.images import download_images, list_images, safe_name, unreadable_images
from mmrec.data.manifest import write_manifest
from mmrec.data.params import IngestConfig
from mmrec.data.report import IngestReport
from mmrec.data.sources import ReadRequest, Source, SourceData, get_source
from mmrec.data.splits import global_time, leave_one_out, split_filters, time_cuts
from mmrec.io import atomic_dir, write_json, write_parquet, write_parquet_groups
from mmrec.paths import image_manifest_path, ingest_dir

ITEM_FIRST_COLS = ["item_idx", "item_id", "text", "image_path", "n_train", "has_text", "has_image"]


def _read(params: IngestConfig, raw_dir: Path, prefix: str, report: IngestReport) -> tuple[Source, SourceData]:
    """The registered reader of data.source (mmrec/data/sources/) and what it read."""
    d = params.data
    src = get_source(d.source)
    return src, src.read(ReadRequest(d, d.source_options(), raw_dir, prefix, report))


def _eligible(require: list[str], can_download: bool) -> pl.Expr:
    """True for items that have (or, by download, may get) every required modality."""
    cond = pl.lit(True)
    if "text" in require:
        cond = cond & pl.col("has_text")
    if "image" in require:
        img = pl.col("image_path").is_not_null()
        if can_download:
            img = img | pl.col("image_url").is_not_null()
        cond = cond & img
    return cond


def _download(items: pl.DataFrame, candidates: pl.Series, raw_dir: Path, prefix: str,
              params: IngestConfig) -> tuple[pl.DataFrame, dict[str, Any]]:
    """Fetch missing images of `candidates`; returns items with image_path updated."""
    cfg = params.data.images
    todo = items.filter(pl.col("item_id").is_in(candidates.implode()) & pl.col("image_path").is_null()
                        & pl.col("image_url").is_not_null())
    if todo.height == 0:
        return items, {"requested": 0}
    rep = download_images(zip(todo["item_id"].to_list(), todo["image_url"].to_list()),
                          raw_dir / "images", workers=cfg.workers, timeout_s=cfg.timeout_s,
                          retries=cfg.retries, max_bytes=cfg.max_bytes, deadline_s=cfg.deadline_s,
                          max_pixels=cfg.max_pixels, allow_private=cfg.allow_private,
                          allow_networks=cfg.allow_networks)
    present = list_images(raw_dir / "images")
    got = [i for i in todo["item_id"].to_list() if safe_name(i) in present]
    paths = pl.DataFrame({"item_id": got, "_p": [f"{prefix}/images/{safe_name(i)}" for i in got]},
                         schema={"item_id": pl.String, "_p": pl.String})
    items = (items.join(paths, on="item_id", how="left", maintain_order="left")
             .with_columns(image_path=pl.coalesce("image_path", "_p")).drop("_p"))
    return items, rep.to_dict()


def table1_stats(inter: pl.DataFrame) -> dict[str, Any]:
    """The ODMT paper's Table 1 columns for the final interactions."""
    users, items, n = inter["user_idx"].n_unique(), inter["item_idx"].n_unique(), inter.height
    return {"users": users, "items": items, "interactions": n,
            "avg_length": round(n / users, 3) if users else 0.0,
            "density": round(n / (users * items), 6) if users and items else 0.0}


def run(params: IngestConfig, root: Path = Path(".")) -> dict[str, Any]:
    """Run ingestion for `params.data`; write the four outputs; return the report dict."""
    t0 = time.time()
    d = params.data
    root = Path(root)
    raw_dir_cfg = Path(d.raw_dir)
    raw_dir = raw_dir_cfg if raw_dir_cfg.is_absolute() else root / raw_dir_cfg
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"data.raw_dir: {raw_dir} is not a directory")
    prefix = raw_dir_cfg.as_posix().rstrip("/")  # image paths as the user wrote raw_dir
    report = IngestReport(allow_truncated=d.allow_truncated)

    src, got = _read(params, raw_dir, prefix, report)
    items, chunks, extra, time_per_second = got.items, got.interactions, got.extra, got.time_per_second
    if items.height == 0:
        raise ValueError(f"{raw_dir}: no usable item metadata rows (see the failures: "
                         f"{[f.to_dict()['failed'] for f in report.files.values()]})")
    can_download = src.downloads_images and d.images.enabled
    items = items.sort("item_id").with_columns(it=pl.int_range(pl.len(), dtype=pl.Int32))
    inter, users = stream_select(chunks, item_codes(items, _eligible(d.require, can_download)),
                                 report)
    if inter.height == 0:
        raise ValueError(f"{raw_dir}: no usable interactions left after reading "
                         f"({report.to_dict()['files']})")
    inter = dedupe(inter, report)
    loo = d.split == "leave_one_out"
    min_user = max(d.min_user_interactions, 3) if loo else d.min_user_interactions
    if min_user != d.min_user_interactions:
        report.notes.append(f"leave_one_out needs 3 interactions per user: min_user raised to {min_user}")

    # global_time: the cut comes first, the user/item filters see the training period only.
    cuts = None if loo else time_cuts(inter.select(timestamp=pl.col("_tfine") // time_per_second),
                                      d.time_split.valid_start, d.time_split.test_start)
    seconds = pl.col("_tfine") // time_per_second
    train_end = None if cuts is None else cuts[0]   # None: the filters see every interaction

    downloads: dict[str, Any] = {"requested": 0}
    if can_download and items["image_url"].is_not_null().any():
        # Only items that can still survive the user filter are worth fetching.
        pre = split_filters(inter, lambda df: core_filter(df, min_user, 0, IngestReport()),
                            train_end, seconds)
        candidates = items.filter(pl.col("it").is_in(pre["it"].unique().implode()))["item_id"]
        items, downloads = _download(items, candidates, raw_dir, prefix, params)
        if "image" in d.require:
            ok = items.filter(_eligible(d.require, False))["it"]
            inter = keep_items(inter, ok, "image_download_failed", report)
    items = items.with_columns(has_image=pl.col("image_path").is_not_null())

    inter = split_filters(
        inter, lambda df: keep_recent(core_filter(df, min_user, d.item_core, report), d.max_history, report),
        train_end, seconds)
    if cuts is not None:
        report.notes.append("global_time: min_user_interactions, item_core and max_history apply to "
                            "the training period (before valid_start) only")
    if inter.height == 0:
        raise ValueError("no interactions left after filtering; see the filter counts: "
                         f"{report.filters}")
    inter, user_ids, items = reindex(inter, users, items, time_per_second)
    del users

    split_info: dict[str, Any] = {"protocol": d.split}
    if cuts is None:
        splits, train = leave_one_out(inter)
    else:
        v, t = cuts
        splits, train = global_time(inter, v, t)
        if train.height == 0:
            raise ValueError(f"data.time_split: no training interaction left before valid_start ({v}) "
                             f"after the filters; see the filter counts: {report.filters}")
        split_info.update(valid_start=v, test_start=t)
    for name in ("train", "valid", "test"):
        s = splits.filter(pl.col("split") == name)
        split_info[name] = {"rows": s.height, "cold_target": int(s["cold_target"].sum()),
                            "cold_user": int(s["cold_user"].sum())}

    n_train = train.group_by("item_idx").agg(n_train=pl.len().cast(pl.Int32))
    items = (items.join(n_train, on="item_idx", how="left")
             .with_columns(pl.col("n_train").fill_null(0)).sort("item_idx"))
    items = items.select(ITEM_FIRST_COLS + [c for c in items.columns if c not in ITEM_FIRST_COLS])
    inter_out = inter

    out = ingest_dir(params, root)
    meta = {"source": d.source, "data_params": d.model_dump(mode="json"), "user_idx_base": 0,
            "item_idx_base": 1}
    rows_read = sum(f.rows_read for f in report.files.values())
    result = {"dataset": d.name, "source": d.source, "raw_dir": prefix, **extra,
              "rows_read": rows_read,
              "rows_parsed": sum(f.rows_parsed for f in report.files.values()),
              "rows_failed": sum(f.rows_failed for f in report.files.values()),
              "interactions_kept": inter_out.height,
              **report.to_dict(), "images": downloads,
              "items_with_text": int(items["has_text"].sum()),
              "items_with_image": int(items["has_image"].sum()),
              # extraction will count these as failed decodes (extract.max_failed_fraction)
              "images_unreadable": unreadable_images(items.filter(pl.col("has_image"))["image_path"].to_list(),
                                                     root, d.images.max_pixels),
              "split": split_info, "stats": table1_stats(inter_out),
              "truncated_files": report.truncated_files()}
    with atomic_dir(out) as tmp:  # all outputs appear together, or none does
        write_parquet(items, tmp / "items.parquet", meta)
        write_parquet_groups(inter_out.height,
                             lambda at, n: with_user_ids(inter_out.slice(at, n), user_ids),
                             tmp / "interactions.parquet", meta)
        write_parquet(splits, tmp / "splits.parquet", meta)
        # image contents as a DVC dependency of extract@image
        write_manifest(items, tmp / image_manifest_path(params, root).name, root)
        write_json(result, tmp / "report.json")
    result["elapsed_s"] = round(time.time() - t0, 2)
    result["output_dir"] = str(out)
    return result


def filter_drops(filters: list[dict[str, Any]]) -> dict[str, int]:
    """Interactions removed per filter step (report.json's `filters`), in the order the steps
    first ran; steps that removed nothing are left out."""
    out: dict[str, int] = {}
    for f in filters:
        out[f["step"]] = out.get(f["step"], 0) + f["rows_dropped"]
    return {step: n for step, n in out.items() if n}


def summary_line(result: dict[str, Any]) -> str:
    """The one-line summary printed by `stages/ingest.py`."""
    s = result["stats"]
    cut = result.get("truncated_files") or []
    shout = (f"WARNING: {len(cut)} TRUNCATED FILE(S) READ ONLY IN PART ({', '.join(cut)}; "
             "data.allow_truncated is on); " if cut else "")
    dropped = filter_drops(result.get("filters", []))
    drops = ("; dropped " + ", ".join(f"{step} -{n:,}" for step, n in dropped.items())) if dropped else ""
    return (shout + f"ingest {result['dataset']} ({result['source']}): read {result['rows_read']:,} rows "
            f"({result['rows_failed']:,} failed){drops} -> {s['interactions']:,} interactions, "
            f"{s['users']:,} users, {s['items']:,} items, avg len {s['avg_length']}, "
            f"density {s['density']}; {result['elapsed_s']}s -> {result['output_dir']}")
