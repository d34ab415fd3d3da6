"""Interaction filters and re-indexing, as polars expressions over the whole (already narrowed)
interaction table. Each step records rows in/out in the IngestReport.

Order (see `mmrec.data.stage.run`): dedupe -> modality -> {user min count, item k-core} until
stable -> keep each user's most recent `max_history`. Dropping items without the required
modalities first (an item property, known before any counting) is equivalent to the papers'
"user filter, drop items, re-apply user filter", and lets the readers drop those rows while
streaming.

While reading, chunk by chunk, raw string ids are replaced by integer codes (`u`, `it`) that
number the ids in sorted raw-id order: only the distinct ids are held as text, sorts, joins and
group-bys run on integers, and the final dense indices keep the sorted-raw-id order the
contract asks for.

Rows carry no line number: `stream_select` keeps them in file order, `dedupe` sorts them by
(user, time) stably, so ties stay in file order, and every later step only filters, so the
(user, time, file) order the outputs need holds from `dedupe` on without another sort. Each
full-table step costs a new table (the allocator keeps the freed one's pages), so rows are 16
bytes wide and the steps are filters with O(rows) masks rather than windows or joins.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import polars as pl

from mmrec.data.report import IngestReport

RAW_SCHEMA = {"user_id": pl.String, "item_id": pl.String, "_tfine": pl.Int64, "_order": pl.Int64}
ORDER_KEYS = ["u", "_tfine"]  # with file order for ties: the order from `dedupe` on


def item_codes(items: pl.DataFrame, eligible: pl.Expr) -> pl.DataFrame:
    """[item_id, it, eligible] for every metadata item; `it` numbers items in sorted-id order."""
    return (items.select("item_id", eligible=eligible).sort("item_id")
            .with_columns(it=pl.int_range(pl.len(), dtype=pl.Int32)))


def stream_select(chunks: Iterable[pl.DataFrame], codes: pl.DataFrame,
                  report: IngestReport) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Read interaction chunks into integer rows [u, it, _tfine] in file order, eligible items only.

    Each chunk is joined to the item codes, filtered, and its user ids replaced by integer
    codes before the next is read: no raw id string of an interaction is held past its chunk,
    so memory grows by 16 bytes per kept row (not by the ids' text). Rows whose item has no
    metadata row and rows whose item lacks a required modality are counted separately. The
    chunks' `_order` (line numbers) must increase: row position stands for it from here on.

    Returns (interactions, users [u, user_id]); `u` numbers the kept users in sorted-id order,
    as `it` does the items.
    """
    from tqdm import tqdm

    # A private mapping user id -> code, filled in first-seen order as chunks arrive (a
    # polars Categorical: the hashing runs in Rust). `kept` holds Categorical columns, which
    # keep the mapping alive; only the distinct ids are held as text.
    users_seen = pl.Categorical(pl.Categories.random())
    kept: list[pl.DataFrame] = []
    n_in = n_known = 0
    last_line = None
    codes = codes.select("item_id", "it", "eligible")
    # delay: the bar appears only when reading takes a while (not for the small sample)
    bar = tqdm(desc="reading interactions", unit=" rows", unit_scale=True, delay=2.0)
    for df in chunks:
        bar.update(df.height)
        n_in += df.height
        last_line = _check_file_order(df["_order"], last_line)
        df = df.join(codes, on="item_id", how="inner", maintain_order="left")
        n_known += df.height
        kept.append(df.filter(pl.col("eligible")).select(
            pl.col("user_id").cast(users_seen).alias("_uc"), "it", "_tfine"))
    bar.close()
    report.dropped("item_not_in_meta", n_in, n_known)
    # Not rechunked: one contiguous copy would double the table for a moment.
    inter = pl.concat(kept, rechunk=False) if kept else pl.DataFrame(
        schema={"_uc": users_seen, "it": pl.Int32, "_tfine": pl.Int64})
    del kept
    report.dropped("item_lacks_required_modality", n_known, inter.height)
    # Code -> rank of the id in sorted order: `u`, as numbering the sorted unique ids gives.
    # Every id in the mapping belongs to a kept row (ids are cast after filtering).
    names = users_seen.categories.to_series().rename("user_id")
    if names.null_count():
        raise RuntimeError("user id codes without an id: the mapping was written to concurrently")
    users = pl.DataFrame({"user_id": names}).with_columns(
        _uc=pl.col("user_id").cast(users_seen).to_physical(),
        u=(pl.col("user_id").rank("ordinal") - 1).cast(pl.Int32))
    lookup = pl.Series(np.full(users["_uc"].max() + 1 if users.height else 0, -1, np.int32))
    lookup = lookup.scatter(users["_uc"], users["u"])
    inter = inter.select(u=lookup.gather(inter["_uc"].to_physical()), it="it", _tfine="_tfine")
    return inter, users.select("user_id", "u").sort("u")


def _check_file_order(lines: pl.Series, after: int | None) -> int | None:
    """The chunk's last line number; raises unless `lines` increase and follow `after`."""
    if lines.is_empty():
        return after
    if (after is not None and lines[0] <= after) or not (lines.diff().drop_nulls() > 0).all():
        raise RuntimeError("interaction reader yielded rows out of file order: ties in time "
                           "would no longer keep file order")
    return int(lines[-1])


def dedupe(inter: pl.DataFrame, report: IngestReport) -> pl.DataFrame:
    """Sort by (user, time), file order kept for ties; drop repeated (user, item, time) rows.

    The first in file order of each repeat stays. Repeats can only sit in a run of rows of one
    user and time, so only the rows of such runs are compared (a hash `unique` over the whole
    table needed ~190 bytes per row: 0.9 GiB for 4.8M rows). Every later step keeps the
    (user, time, file) order this leaves.
    """
    out = inter.sort(ORDER_KEYS, maintain_order=True)
    tie = ((pl.col("u") == pl.col("u").shift(1))
           & (pl.col("_tfine") == pl.col("_tfine").shift(1))).fill_null(False)
    tied = out.with_row_index("_i").filter(tie | tie.shift(-1).fill_null(False))
    repeats = tied.filter(~pl.struct("u", "_tfine", "it").is_first_distinct())["_i"]
    if repeats.len():
        out = out.filter(pl.Series(np.ones(out.height, bool)).scatter(repeats, False))
    report.dropped("duplicate_user_item_timestamp", inter.height, out.height)
    return out


def keep_items(inter: pl.DataFrame, codes: pl.Series, step: str,
               report: IngestReport) -> pl.DataFrame:
    """Keep rows whose item code `it` is in `codes`."""
    out = inter.filter(pl.col("it").is_in(codes.implode()))
    report.dropped(step, inter.height, out.height)
    return out


def group_sizes(codes: pl.Series) -> pl.Series:
    """For each row, how many rows share its code; codes are dense non-negative integers, so
    a bincount does it without the per-group index lists of a window `over`."""
    c = codes.to_numpy()
    return pl.Series(np.bincount(c)[c] if c.size else np.zeros(0, np.int64))


def core_filter(inter: pl.DataFrame, min_user: int, item_core: int,
                report: IngestReport) -> pl.DataFrame:
    """Alternate the user minimum-count filter and the item k-core until nothing changes."""
    n0 = inter.height
    user_drop = item_drop = rounds = 0
    while True:
        rounds += 1
        before = inter.height
        inter = inter.filter(group_sizes(inter["u"]) >= min_user)
        user_drop += before - inter.height
        if item_core <= 0:
            break
        mid = inter.height
        inter = inter.filter(group_sizes(inter["it"]) >= item_core)
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
    """Keep each user's `max_history` most recent rows; `inter` in `dedupe`'s order.

    A user's rows are contiguous and oldest first, so a row is among its user's last
    `max_history` exactly when the row `max_history` further down belongs to someone else.
    """
    later = pl.col("u").shift(-max_history)
    out = inter.filter(later.is_null() | (later != pl.col("u")))
    report.dropped("max_history", inter.height, out.height, max_history=max_history)
    return out


def reindex(inter: pl.DataFrame, users: pl.DataFrame, items: pl.DataFrame,
            time_per_second: int = 1) -> tuple[pl.DataFrame, pl.Series, pl.DataFrame]:
    """Dense ids that keep the sorted-raw-id order: users 0..U-1, items 1..N (0 is padding).

    `inter` is in `dedupe`'s (user, time, file) order; `items` is the metadata with its `it`
    code, `users` the [user_id, u] table of `stream_select`. Returns interactions (user_idx, item_idx, timestamp [s]) sorted by user,
    time, file order; the user ids by user_idx (`with_user_ids` adds them to rows, at write
    time: held per row they are the largest column); and the metadata rows of the items that
    occur, item_idx first, sorted.
    """
    kept_u = inter["u"].unique(maintain_order=True)  # ascending: the rows are sorted by u
    present = inter["it"].unique().sort()
    # it -> 1-based rank among the present codes (a dense rank without sorting every row)
    item_idx = pl.Series(np.zeros(items.height, np.int32)).scatter(
        present, pl.int_range(1, present.len() + 1, dtype=pl.Int32, eager=True))
    imap = pl.DataFrame({"it": present, "item_idx": item_idx.gather(present)})
    kept = (items.join(imap, on="it", how="inner").sort("item_idx").drop("it")
            .select("item_idx", pl.exclude("item_idx")))
    out = inter.select(
        # in u order, the run number of u is its dense rank among the kept users
        user_idx=pl.col("u").rle_id().cast(pl.Int32),
        item_idx=item_idx.gather(inter["it"]),
        timestamp=(pl.col("_tfine") // time_per_second).cast(pl.Int64))
    # users is sorted by u and u numbers its rows: row u holds the id of code u
    return out, users["user_id"].gather(kept_u), kept


def with_user_ids(inter: pl.DataFrame, user_ids: pl.Series) -> pl.DataFrame:
    """The interactions output layout: user_idx, user_id, item_idx, timestamp."""
    return inter.select("user_idx", user_id=user_ids.gather(inter["user_idx"]),
                        item_idx="item_idx", timestamp="timestamp")
