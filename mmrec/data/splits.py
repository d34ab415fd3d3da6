"""Evaluation splits over re-indexed, time-sorted interactions.

Both splits write the same columns: `user_idx` int32, `split` (train/valid/test), `history`
list<int32> (oldest first), `target` int32, `cold_user` bool (user has no training
interaction), `cold_target` bool (target item never occurs in training).

- leave_one_out: three rows per user. With the user's sequence s (len n >= 3): train row
  history s[:n-3], target s[n-3] (history + [target] is the whole training sequence); valid row
  history s[:n-2], target s[n-2]; test row history s[:n-1], target s[n-1].
- global_time: interactions before `valid_start` are training, [valid_start, test_start)
  validation, the rest test. One train row per user with training interactions (same layout as
  leave-one-out), and one valid/test row per target interaction whose history is ALL of that
  user's earlier kept interactions, whatever their split (a user seen only after the cut gets
  rows with `cold_user` true; nothing is dropped).

  The cut comes first (`split_filters`): the user minimum, the item core and `max_history` run
  on the training period alone, so a user's training history never depends on how active they
  are after the cut. Valid/test interactions are all kept (their histories are the user's kept
  earlier interactions); an item or user the training filters removed is cold there.
"""

from __future__ import annotations

import datetime as dt
from typing import Callable

import polars as pl

SPLIT_ORDER = {"train": 0, "valid": 1, "test": 2}
SPLIT_SCHEMA = {"user_idx": pl.Int32, "split": pl.String, "history": pl.List(pl.Int32),
                "target": pl.Int32, "cold_user": pl.Boolean, "cold_target": pl.Boolean}


def _sequences(inter: pl.DataFrame) -> pl.DataFrame:
    """One row per user: `seq` list<int32> of item_idx in time order, `n` its length.

    `inter` is grouped by user (as `reindex` leaves it): told so, polars groups by slicing
    instead of building an index list per user.
    """
    return (inter.with_columns(pl.col("user_idx").set_sorted())
            .group_by("user_idx", maintain_order=True)
            .agg(pl.col("item_idx").alias("seq"))
            .with_columns(n=pl.col("seq").list.len().cast(pl.Int64)))


def _finish(rows: pl.DataFrame, train_items: pl.Series) -> pl.DataFrame:
    """`rows` in (user, split) order with cold_target, in the output schema."""
    return (rows.with_columns(cold_target=~pl.col("target").is_in(train_items.implode()))
            .select([pl.col(k).cast(t) for k, t in SPLIT_SCHEMA.items()]))


def _split_order(rows: pl.DataFrame) -> pl.DataFrame:
    """Rows sorted by user, then train, valid, test (file order kept within each)."""
    return (rows.with_columns(_s=pl.col("split").replace_strict(SPLIT_ORDER, return_dtype=pl.Int8))
            .sort(["user_idx", "_s"], maintain_order=True).drop("_s"))


# leave_one_out: each split's target is this many items from the end of the user's sequence
LOO_BACK = {"train": 3, "valid": 2, "test": 1}


def leave_one_out(inter: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(splits, train interactions) of `inter` in `reindex`'s order (by user, oldest first).

    Needs >= 3 interactions per user (the filters ensure it).
    """
    seqs = _sequences(inter)
    short = seqs.filter(pl.col("n") < 3)
    if short.height:
        raise ValueError(f"leave_one_out needs >= 3 interactions per user; {short.height} users "
                         "have fewer (raise data.min_user_interactions)")
    # Three rows per user, made in output order: sorting rows that hold lists copies them all.
    back = pl.col("back")
    rows = (seqs.with_columns(back=pl.lit(list(LOO_BACK.values()), dtype=pl.List(pl.Int64)))
            .explode("back")
            .select("user_idx",
                    split=back.replace_strict({v: k for k, v in LOO_BACK.items()},
                                              return_dtype=pl.String),
                    history=pl.col("seq").list.head(pl.col("n") - back),
                    target=pl.col("seq").list.get(pl.col("n") - back),
                    cold_user=pl.lit(False)))
    del seqs
    # rows are grouped by user, oldest first: a row is training unless it is one of its
    # user's last two, i.e. unless the row two further down belongs to someone else
    train = inter.filter(pl.col("user_idx").shift(-2) == pl.col("user_idx"))
    return _finish(rows, train["item_idx"].unique()), train


def parse_cut(value: str | None) -> int | None:
    """Unix seconds from `"1546300800"` or `"2019-01-01"` (UTC midnight); None stays None."""
    if value is None:
        return None
    v = str(value).strip()
    if v.lstrip("-").isdigit():
        return int(v)
    try:
        d = dt.datetime.strptime(v, "%Y-%m-%d").replace(tzinfo=dt.timezone.utc)
    except ValueError:
        raise ValueError(f"data.time_split: {value!r} is neither unix seconds nor YYYY-MM-DD") from None
    return int(d.timestamp())


def time_cuts(inter: pl.DataFrame, valid_start: str | None,
              test_start: str | None) -> tuple[int, int]:
    """Cut points; a missing one defaults to the 0.8 (valid) / 0.9 (test) timestamp quantile."""
    v, t = parse_cut(valid_start), parse_cut(test_start)
    ts = inter["timestamp"]
    if v is None:
        v = int(ts.quantile(0.8, interpolation="lower"))
    if t is None:
        t = int(ts.quantile(0.9, interpolation="lower"))
    if t < v:
        raise ValueError(f"data.time_split: test_start ({t}) is before valid_start ({v})")
    return v, t


def split_filters(inter: pl.DataFrame, filters: Callable[[pl.DataFrame], pl.DataFrame],
                  valid_start: int | None = None, seconds: pl.Expr | None = None) -> pl.DataFrame:
    """Apply the user/item `filters` (min count, core, max_history) where the split asks.

    Without `valid_start` (leave-one-out) they see every interaction. With it (global_time) they
    see only the training period, rows whose `seconds` (an expression, default the `timestamp`
    column) is before the cut; the later rows are kept untouched. Rows keep their order.
    """
    if valid_start is None:
        return filters(inter)
    before = (pl.col("timestamp") if seconds is None else seconds) < valid_start
    inter = inter.with_row_index("_i")
    train = filters(inter.filter(before))
    # The kept training rows and every later row, in the order they came in (a concat of
    # the two parts would need sorting again).
    keep = inter.select(~before).to_series().scatter(train["_i"], True)
    return inter.filter(keep).drop("_i")


def global_time(inter: pl.DataFrame, valid_start: int,
                test_start: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(splits, train interactions) for a global time split; layout in the module docstring."""
    inter = inter.with_columns(
        _pos=pl.int_range(pl.len(), dtype=pl.Int32).over("user_idx"),
        split=pl.when(pl.col("timestamp") < valid_start).then(pl.lit("train"))
        .when(pl.col("timestamp") < test_start).then(pl.lit("valid")).otherwise(pl.lit("test")))
    train = inter.filter(pl.col("split") == "train")
    train_seqs = _sequences(train)
    train_rows = train_seqs.select(
        "user_idx", split=pl.lit("train"), history=pl.col("seq").list.head(pl.col("n") - 1),
        target=pl.col("seq").list.get(pl.col("n") - 1), cold_user=pl.lit(False))
    seqs = _sequences(inter)
    evals = (inter.filter(pl.col("split") != "train")
             .join(seqs.select("user_idx", "seq"), on="user_idx", how="left")
             .select("user_idx", "split", history=pl.col("seq").list.head(pl.col("_pos")),
                     target=pl.col("item_idx"),
                     cold_user=~pl.col("user_idx").is_in(train["user_idx"].unique().implode())))
    rows = _split_order(pl.concat([train_rows, evals]))
    return _finish(rows, train["item_idx"].unique()), train.drop("_pos", "split")
