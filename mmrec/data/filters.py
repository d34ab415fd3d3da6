"""Interaction filters and re-indexing, as polars expressions over the whole (already narrowed)
interaction table. Each step records rows in/out in the IngestReport.

Order (see `apply_filters`): dedupe -> modality -> {user min count, item k-core} until stable
-> keep each user's most recent `max_history`. Dropping items without the required modalities
first (it is an item property, known before any counting) is equivalent to the papers' "user
filter, drop items, re-apply user filter", and lets the readers drop those rows while streaming.
"""

from __future__ import annotations

from typing import Iterable

import polars as pl

from mmrec.data.report import IngestReport

SORT_KEYS = ["user_id", "_tfine", "_order"]


def stream_select(chunks: Iterable[pl.DataFrame], known: pl.Series, eligible: pl.Series,
                  report: IngestReport) -> pl.DataFrame:
    """Concatenate interaction chunks, keeping only rows whose item is `eligible`.

    Filtering per chunk keeps memory proportional to the rows kept. Rows whose item has no
    metadata row and rows whose item lacks a required modality are counted separately.
    """
    kept: list[pl.DataFrame] = []
    n_in = n_known = 0
    for df in chunks:
        n_in += df.height
        df = df.filter(pl.col("item_id").is_in(known.implode()))
        n_known += df.height
        kept.append(df.filter(pl.col("item_id").is_in(eligible.implode())))
    out = pl.concat(kept, rechunk=True) if kept else pl.DataFrame(
        schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64,
                "_tfine": pl.Int64, "_order": pl.Int64})
    report.dropped("item_not_in_meta", n_in, n_known)
    report.dropped("item_lacks_required_modality", n_known, out.height)
    return out


def dedupe(inter: pl.DataFrame, report: IngestReport) -> pl.DataFrame:
    """Drop repeated identical (user, item, timestamp) rows, keeping the first in file order."""
    out = inter.sort("_order").unique(["user_id", "item_id", "_tfine"], keep="first",
                                      maintain_order=True)
    report.dropped("duplicate_user_item_timestamp", inter.height, out.height)
    return out


def keep_items(inter: pl.DataFrame, items: pl.Series, step: str,
               report: IngestReport) -> pl.DataFrame:
    """Keep rows whose item_id is in `items`."""
    out = inter.filter(pl.col("item_id").is_in(items.implode()))
    report.dropped(step, inter.height, out.height)
    return out


def core_filter(inter: pl.DataFrame, min_user: int, item_core: int,
                report: IngestReport) -> pl.DataFrame:
    """Alternate the user minimum-count filter and the item k-core until nothing changes."""
    n0 = inter.height
    user_drop = item_drop = rounds = 0
    while True:
        rounds += 1
        before = inter.height
        users = inter.group_by("user_id").len().filter(pl.col("len") >= min_user)["user_id"]
        inter = inter.filter(pl.col("user_id").is_in(users.implode()))
        user_drop += before - inter.height
        if item_core <= 0:
            break
        mid = inter.height
        items = inter.group_by("item_id").len().filter(pl.col("len") >= item_core)["item_id"]
        inter = inter.filter(pl.col("item_id").is_in(items.implode()))
        item_drop += mid - inter.height
        if inter.height == before or inter.height == 0:
            break
    report.dropped("min_user_interactions", n0, n0 - user_drop, threshold=min_user,
                   rounds=rounds)
    if item_core > 0:
        report.dropped("item_core", n0 - user_drop, n0 - user_drop - item_drop,
                       threshold=item_core, rounds=rounds)
    return inter


def keep_recent(inter: pl.DataFrame, max_history: int, report: IngestReport) -> pl.DataFrame:
    """Keep each user's `max_history` most recent rows; ties keep file order."""
    out = (inter.sort(SORT_KEYS)
           .filter(pl.int_range(pl.len(), dtype=pl.Int64).over("user_id")
                   >= pl.len().over("user_id").cast(pl.Int64) - max_history))
    report.dropped("max_history", inter.height, out.height, max_history=max_history)
    return out


def reindex(inter: pl.DataFrame, items: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Dense ids from sorted raw ids: users 0..U-1, items 1..N (0 is padding).

    Returns interactions (user_idx, user_id, item_idx, timestamp, _tfine, _order) sorted by
    user then time then file order, and the items that occur, with item_idx, sorted.
    """
    user_map = (inter.select(pl.col("user_id").unique().sort())
                .with_columns(user_idx=pl.int_range(pl.len(), dtype=pl.Int32)))
    item_map = (inter.select(pl.col("item_id").unique().sort())
                .with_columns(item_idx=pl.int_range(1, pl.len() + 1, dtype=pl.Int32)))
    out = (inter.join(user_map, on="user_id").join(item_map, on="item_id")
           .sort(["user_idx", "_tfine", "_order"])
           .select("user_idx", "user_id", "item_idx", "timestamp", "_tfine", "_order"))
    items = item_map.join(items, on="item_id", how="left").sort("item_idx")
    return out, items
