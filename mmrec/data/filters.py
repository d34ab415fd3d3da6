"""Interaction filters and re-indexing, as polars expressions over the whole (already narrowed)
interaction table. Each step records rows in/out in the IngestReport.

Order (see `mmrec.data.stage.run`): dedupe -> modality -> {user min count, item k-core} until
stable -> keep each user's most recent `max_history`. Dropping items without the required
modalities first (an item property, known before any counting) is equivalent to the papers'
"user filter, drop items, re-apply user filter", and lets the readers drop those rows while
streaming.

After reading, raw string ids are replaced by integer codes (`u`, `it`) assigned in sorted raw-id
order: sorts, joins and group-bys then run on integers, and the final dense indices keep the
sorted-raw-id order the contract asks for.
"""

from __future__ import annotations

from typing import Iterable

import polars as pl

from mmrec.data.report import IngestReport

RAW_SCHEMA = {"user_id": pl.String, "item_id": pl.String, "_tfine": pl.Int64, "_order": pl.Int64}
SORT_KEYS = ["u", "_tfine", "_order"]


def item_codes(items: pl.DataFrame, eligible: pl.Expr) -> pl.DataFrame:
    """[item_id, it, eligible] for every metadata item; `it` numbers items in sorted-id order."""
    return (items.select("item_id", eligible=eligible).sort("item_id")
            .with_columns(it=pl.int_range(pl.len(), dtype=pl.Int32)))


def stream_select(chunks: Iterable[pl.DataFrame], codes: pl.DataFrame,
                  report: IngestReport) -> pl.DataFrame:
    """Concatenate interaction chunks as [user_id, it, _tfine, _order], eligible items only.

    Each chunk is joined to the item codes and filtered before the next is read, so memory
    grows only with the rows kept, and item ids are held as int32 codes instead of strings.
    Rows whose item has no metadata row and rows whose item lacks a required modality are
    counted separately.
    """
    from tqdm import tqdm

    kept: list[pl.DataFrame] = []
    n_in = n_known = 0
    codes = codes.select("item_id", "it", "eligible")
    # delay: the bar appears only when reading takes a while (not for the small sample)
    bar = tqdm(desc="reading interactions", unit=" rows", unit_scale=True, delay=2.0)
    for df in chunks:
        bar.update(df.height)
        n_in += df.height
        df = df.join(codes, on="item_id", how="inner", maintain_order="left")
        n_known += df.height
        kept.append(df.filter(pl.col("eligible")).select("user_id", "it", "_tfine", "_order"))
    bar.close()
    out = (pl.concat(kept) if kept else
           pl.DataFrame(schema={"user_id": pl.String, "it": pl.Int32, "_tfine": pl.Int64,
                                "_order": pl.Int64}))
    report.dropped("item_not_in_meta", n_in, n_known)
    report.dropped("item_lacks_required_modality", n_known, out.height)
    return out


def encode_users(inter: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Replace user_id by an int32 code `u` numbered in sorted user-id order.

    Returns (interactions [u, it, _tfine, _order], users [u, user_id]).
    """
    users = (inter.select(pl.col("user_id").unique().sort())
             .with_columns(u=pl.int_range(pl.len(), dtype=pl.Int32)))
    out = (inter.join(users, on="user_id", maintain_order="left")
           .select("u", "it", "_tfine", "_order"))
    return out, users


def dedupe(inter: pl.DataFrame, report: IngestReport) -> pl.DataFrame:
    """Drop repeated identical (user, item, timestamp) rows, keeping the first in file order."""
    if not inter["_order"].is_sorted():
        inter = inter.sort("_order")
    out = inter.unique(["u", "it", "_tfine"], keep="first", maintain_order=True)
    report.dropped("duplicate_user_item_timestamp", inter.height, out.height)
    return out


def keep_items(inter: pl.DataFrame, codes: pl.Series, step: str,
               report: IngestReport) -> pl.DataFrame:
    """Keep rows whose item code `it` is in `codes`."""
    out = inter.filter(pl.col("it").is_in(codes.implode()))
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
        inter = inter.filter(pl.len().over("u") >= min_user)
        user_drop += before - inter.height
        if item_core <= 0:
            break
        mid = inter.height
        inter = inter.filter(pl.len().over("it") >= item_core)
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
    """Sort by user, time, file order; keep each user's `max_history` most recent rows."""
    out = (inter.sort(SORT_KEYS)
           .filter(pl.int_range(pl.len(), dtype=pl.Int64).over("u")
                   >= pl.len().over("u").cast(pl.Int64) - max_history))
    report.dropped("max_history", inter.height, out.height, max_history=max_history)
    return out


def reindex(inter: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame,
            time_per_second: int = 1) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Dense ids that keep the sorted-raw-id order: users 0..U-1, items 1..N (0 is padding).

    `items` is the metadata with its `it` code. Returns interactions (user_idx, user_id,
    item_idx, timestamp [s]) sorted by user, time, file order; and the metadata rows of the
    items that occur, item_idx first, sorted.
    """
    inter = (inter.sort(["u", "_tfine", "_order"])
             .with_columns(user_idx=(pl.col("u").rank("dense") - 1).cast(pl.Int32),
                           item_idx=pl.col("it").rank("dense").cast(pl.Int32)))
    imap = inter.select("it", "item_idx").unique("it")
    kept = (items.join(imap, on="it", how="inner").sort("item_idx").drop("it")
            .select("item_idx", pl.exclude("item_idx")))
    out = inter.join(users, on="u", maintain_order="left").select(
        "user_idx", "user_id", "item_idx",
        timestamp=(pl.col("_tfine") // time_per_second).cast(pl.Int64))
    return out, kept
