import polars as pl
import pytest

from mmrec.data.filters import (
    core_filter,
    dedupe,
    item_codes,
    keep_recent,
    reindex,
    stream_select,
    with_user_ids,
)
from mmrec.data.report import IngestReport
from mmrec.data.splits import global_time, leave_one_out, parse_cut, time_cuts


def _raw(rows):
    """rows: (user, item, t); file order = list order."""
    return pl.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
         "_tfine": [r[2] for r in rows], "_order": list(range(len(rows)))},
        schema={"user_id": pl.String, "item_id": pl.String, "_tfine": pl.Int64, "_order": pl.Int64})


def _encode(rows, meta=None):
    """What the stage does before filtering: item codes from metadata, user codes, then
    `dedupe`, which puts rows in the (user, time, file) order the later steps need."""
    raw = _raw(rows)
    if meta is None:
        meta = pl.DataFrame({"item_id": sorted(set(raw["item_id"]))})
    items = meta.sort("item_id").with_columns(it=pl.int_range(pl.len(), dtype=pl.Int32))
    inter, users = stream_select([raw], item_codes(items, pl.lit(True)), IngestReport())
    return dedupe(inter, IngestReport()), users, items


def _inter(rows):
    """Rows as `stream_select` gives them: file order, nothing dropped."""
    raw = _raw(rows)
    items = pl.DataFrame({"item_id": sorted(set(raw["item_id"]))}).with_columns(
        it=pl.int_range(pl.len(), dtype=pl.Int32))
    return stream_select([raw], item_codes(items, pl.lit(True)), IngestReport())[0]


def _indexed_rows(rows):
    inter, users, items = _encode(rows)
    return reindex(keep_recent(inter, 100, IngestReport()), users, items)[0]


def _random_inter(n_users=40, n_items=30, seed=0):
    import random

    rnd = random.Random(seed)
    rows = []
    for u in range(n_users):
        for k in range(rnd.randint(1, 25)):
            rows.append((f"u{u:02d}", f"i{rnd.randint(0, n_items):02d}", rnd.randint(0, 50)))
    rnd.shuffle(rows)
    return rows


def test_dedupe_keeps_first_and_counts():
    rep = IngestReport()
    out = dedupe(_inter([("a", "x", 1), ("a", "x", 1), ("a", "x", 2), ("b", "x", 1)]), rep)
    assert out.height == 3 and rep.filters[0]["rows_dropped"] == 1


def test_core_filter_reaches_a_fixed_point():
    rep = IngestReport()
    out = core_filter(_inter(_random_inter()), 5, 3, rep)
    assert out.group_by("u").len()["len"].min() >= 5
    assert out.group_by("it").len()["len"].min() >= 3
    steps = {f["step"]: f for f in rep.filters}
    assert steps["min_user_interactions"]["rows_dropped"] + steps["item_core"]["rows_dropped"] \
        == len(_random_inter()) - out.height


def test_keep_recent_and_stable_tie_break():
    rows = [("a", f"i{k}", 10) for k in range(6)] + [("a", "late", 11), ("b", "x", 1)]
    inter, users, items = _encode(rows)
    out, user_ids, kept = reindex(keep_recent(inter, 3, IngestReport()), users, items)
    out = with_user_ids(out, user_ids)
    name = dict(zip(kept["item_idx"], kept["item_id"]))
    # equal timestamps: the later file rows are the more recent ones
    assert [name[i] for i in out.filter(pl.col("user_id") == "a")["item_idx"]] == ["i4", "i5", "late"]
    assert out.filter(pl.col("user_id") == "b").height == 1


def test_reindex_is_sorted_and_padding_free():
    meta = pl.DataFrame({"item_id": ["z", "unused", "x", "y"], "title": list("ZUXY")})
    inter, users, items = _encode([("b", "z", 1), ("a", "y", 2), ("a", "x", 3)], meta)
    inter, user_ids, kept = reindex(keep_recent(inter, 9, IngestReport()), users, items)
    assert inter.columns == ["user_idx", "item_idx", "timestamp"]
    inter = with_user_ids(inter, user_ids)
    assert inter.columns == ["user_idx", "user_id", "item_idx", "timestamp"]
    assert kept.select("item_idx", "item_id", "title").rows() == [(1, "x", "X"), (2, "y", "Y"),
                                                                  (3, "z", "Z")]
    assert inter.select("user_idx", "user_id", "item_idx").rows() == [(0, "a", 2), (0, "a", 1),
                                                                      (1, "b", 3)]


def _indexed(seed=1):
    inter, users, items = _encode(_random_inter(seed=seed))
    inter = keep_recent(core_filter(inter, 3, 0, IngestReport()), 15, IngestReport())
    return reindex(inter, users, items)[0]


def test_leave_one_out_layout_and_no_overlap():
    inter = _indexed()
    splits, train = leave_one_out(inter)
    seqs = dict(inter.group_by("user_idx", maintain_order=True).agg("item_idx").iter_rows())
    assert splits.height == 3 * len(seqs)
    assert splits.schema["history"] == pl.List(pl.Int32) and splits.schema["target"] == pl.Int32
    for u, s in seqs.items():
        rows = {r["split"]: r for r in splits.filter(pl.col("user_idx") == u).iter_rows(named=True)}
        assert rows["train"]["history"] + [rows["train"]["target"]] == s[:-2]
        assert rows["valid"]["history"] == s[:-2] and rows["valid"]["target"] == s[-2]
        assert rows["test"]["history"] == s[:-1] and rows["test"]["target"] == s[-1]
    assert train.height == inter.height - 2 * len(seqs)
    train_items = set(train["item_idx"])
    for r in splits.iter_rows(named=True):
        assert r["cold_target"] == (r["target"] not in train_items)


def test_leave_one_out_train_row_for_one_item_training_sequence():
    inter = _indexed_rows([("a", "x", 1), ("a", "y", 2), ("a", "z", 3)])
    splits, _ = leave_one_out(inter)
    assert splits.select("split", "history", "target").rows() == [
        ("train", [], 1), ("valid", [1], 2), ("test", [1, 2], 3)]


def test_global_time_split_flags_cold_and_keeps_everything():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "z", 5), ("a", "w", 9),
            ("b", "x", 6), ("b", "q", 8)]  # b is only seen after the cut
    inter = _indexed_rows(rows)
    splits, train = global_time(inter, 5, 8)
    got = splits.select("user_idx", "split", "history", "target", "cold_user", "cold_target").rows()
    # items: q=1, w=2, x=3, y=4, z=5; users a=0, b=1
    assert got == [(0, "train", [3], 4, False, False), (0, "valid", [3, 4], 5, False, True),
                   (0, "test", [3, 4, 5], 2, False, True), (1, "valid", [], 3, True, False),
                   (1, "test", [3], 1, True, True)]
    assert train.height == 2
    n_targets = splits.filter(pl.col("split") != "train").height + splits.filter(
        pl.col("split") == "train").height
    assert n_targets == 5  # a's 2 train interactions make one train row; no row dropped


def test_time_cuts_parse_and_default():
    assert parse_cut("2020-01-01") == 1577836800 and parse_cut("12") == 12
    with pytest.raises(ValueError, match="YYYY-MM-DD"):
        parse_cut("01/01/2020")
    inter = _raw([("a", "x", t) for t in range(100)]).rename({"_tfine": "timestamp"})
    assert time_cuts(inter, None, None) == (79, 89)
    with pytest.raises(ValueError, match="before valid_start"):
        time_cuts(inter, "50", "10")


def _time_split_pipeline(rows, min_user, max_history, cut, test_cut):
    """What the ingest stage does for global_time: cut, filter the training period, split."""
    from mmrec.data.splits import split_filters

    inter, users, items = _encode(rows)
    rep = IngestReport()
    kept = split_filters(inter, lambda df: keep_recent(core_filter(df, min_user, 0, rep), max_history, rep),
                         cut, pl.col("_tfine"))
    return global_time(reindex(kept, users, items)[0], cut, test_cut)


def test_global_time_cuts_first_then_filters_the_training_period():
    # a: 6 interactions before the cut (t=1..6), 15 after (t=20..34); b: active only after the
    # cut; c: 2 training interactions (below min_user) and one test interaction.
    a_train = [("a", f"i{t}", t) for t in range(1, 7)]
    a_after = [("a", f"j{t}", t) for t in range(20, 35)]
    b_after = [("b", "i1", 21), ("b", "i2", 30)]
    c_rows = [("c", "i3", 2), ("c", "i4", 3), ("c", "i5", 31)]
    splits, train = _time_split_pipeline(a_train + a_after + b_after + c_rows, min_user=3,
                                         max_history=4, cut=10, test_cut=25)
    ids = dict(zip(["a", "b", "c"], range(3)))
    # a keeps its 4 most recent training interactions whatever it does after the cut
    a_tr = train.filter(pl.col("user_idx") == ids["a"]).sort("timestamp")
    assert a_tr["timestamp"].to_list() == [3, 4, 5, 6]
    a_row = splits.filter(pl.col("split") == "train", pl.col("user_idx") == ids["a"]).row(0, named=True)
    assert a_row["history"] + [a_row["target"]] == a_tr["item_idx"].to_list()
    # every later interaction of a is an evaluation row (none truncated by max_history)
    a_eval = splits.filter(pl.col("user_idx") == ids["a"], pl.col("split") != "train")
    assert a_eval.height == 15 and not a_eval["cold_user"].any()
    assert a_eval["history"].list.len().to_list() == list(range(4, 19))
    # b, active only after the cut, is a cold user with its valid and test rows
    b_rows = splits.filter(pl.col("user_idx") == ids["b"])
    assert b_rows["split"].to_list() == ["valid", "test"] and b_rows["cold_user"].all()
    assert b_rows["history"].list.len().to_list() == [0, 1]
    # c fails min_user within the training period: no training row, its test row is cold
    c_rows_out = splits.filter(pl.col("user_idx") == ids["c"])
    assert c_rows_out["split"].to_list() == ["test"] and c_rows_out["cold_user"].all()
    assert train.filter(pl.col("user_idx") == ids["c"]).height == 0


def test_dedupe_sorts_by_user_and_time_with_file_order_for_ties():
    rows = [("b", "x", 1), ("a", "y", 5), ("a", "x", 5), ("a", "y", 5), ("a", "z", 1), ("a", "x", 5)]
    out = dedupe(_inter(rows), IngestReport())
    # a: z@1, then the t=5 tie in file order (y, x), their repeats dropped; then b
    assert out.select("u", "it", "_tfine").rows() == [(0, 2, 1), (0, 1, 5), (0, 0, 5), (1, 0, 1)]


def test_stream_select_refuses_rows_out_of_file_order():
    raw = _raw([("a", "x", 1), ("b", "x", 2)])
    items = pl.DataFrame({"item_id": ["x"]}).with_columns(it=pl.int_range(pl.len(), dtype=pl.Int32))
    with pytest.raises(RuntimeError, match="out of file order"):
        stream_select([raw.reverse()], item_codes(items, pl.lit(True)), IngestReport())
    with pytest.raises(RuntimeError, match="out of file order"):
        stream_select([raw, raw], item_codes(items, pl.lit(True)), IngestReport())


def test_split_filters_keep_the_row_order():
    from mmrec.data.splits import split_filters

    inter = _encode([("a", f"i{t}", t) for t in range(8)] + [("b", "i1", 3), ("b", "i2", 9)])[0]
    out = split_filters(inter, lambda df: keep_recent(df, 3, IngestReport()), 5, pl.col("_tfine"))
    # a keeps t=2,3,4 before the cut and everything after; b is untouched; order kept
    assert out.select("u", "_tfine").rows() == [(0, 2), (0, 3), (0, 4), (0, 5), (0, 6), (0, 7),
                                                (1, 3), (1, 9)]
