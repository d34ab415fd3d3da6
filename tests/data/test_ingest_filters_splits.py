import polars as pl
import pytest

from mmrec.data.filters import core_filter, dedupe, keep_recent, reindex
from mmrec.data.report import IngestReport
from mmrec.data.splits import global_time, leave_one_out, parse_cut, time_cuts


def _inter(rows):
    """rows: (user, item, t); file order = list order."""
    return pl.DataFrame(
        {"user_id": [r[0] for r in rows], "item_id": [r[1] for r in rows],
         "timestamp": [r[2] for r in rows], "_tfine": [r[2] for r in rows],
         "_order": list(range(len(rows)))},
        schema={"user_id": pl.String, "item_id": pl.String, "timestamp": pl.Int64,
                "_tfine": pl.Int64, "_order": pl.Int64})


def _random_inter(n_users=40, n_items=30, seed=0):
    import random

    rnd = random.Random(seed)
    rows = []
    for u in range(n_users):
        for k in range(rnd.randint(1, 25)):
            rows.append((f"u{u:02d}", f"i{rnd.randint(0, n_items):02d}", rnd.randint(0, 50)))
    rnd.shuffle(rows)
    return _inter(rows)


def test_dedupe_keeps_first_and_counts():
    rep = IngestReport()
    out = dedupe(_inter([("a", "x", 1), ("a", "x", 1), ("a", "x", 2), ("b", "x", 1)]), rep)
    assert out.height == 3 and rep.filters[0]["rows_dropped"] == 1


def test_core_filter_reaches_a_fixed_point():
    rep = IngestReport()
    out = core_filter(_random_inter(), 5, 3, rep)
    assert out.group_by("user_id").len()["len"].min() >= 5
    assert out.group_by("item_id").len()["len"].min() >= 3
    steps = {f["step"]: f for f in rep.filters}
    assert steps["min_user_interactions"]["rows_dropped"] + steps["item_core"]["rows_dropped"] \
        == _random_inter().height - out.height


def test_keep_recent_and_stable_tie_break():
    rows = [("a", f"i{k}", 10) for k in range(6)] + [("a", "late", 11), ("b", "x", 1)]
    out = keep_recent(_inter(rows), 3, IngestReport())
    # equal timestamps: the later file rows are the more recent ones
    assert out.filter(pl.col("user_id") == "a")["item_id"].to_list() == ["i4", "i5", "late"]
    assert out.filter(pl.col("user_id") == "b").height == 1


def test_reindex_is_sorted_and_padding_free():
    inter, items = reindex(_inter([("b", "z", 1), ("a", "y", 2), ("a", "x", 3)]),
                           pl.DataFrame({"item_id": ["x", "y", "z", "unused"]}))
    assert items.select("item_idx", "item_id").rows() == [(1, "x"), (2, "y"), (3, "z")]
    assert inter.select("user_idx", "item_idx").rows() == [(0, 2), (0, 1), (1, 3)]


def _indexed(seed=1):
    inter = core_filter(_random_inter(seed=seed), 3, 0, IngestReport())
    inter, _ = reindex(keep_recent(inter, 15, IngestReport()), pl.DataFrame({"item_id": ["-"]}))
    return inter


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
    inter, _ = reindex(_inter([("a", "x", 1), ("a", "y", 2), ("a", "z", 3)]),
                       pl.DataFrame({"item_id": ["x"]}))
    splits, _ = leave_one_out(inter)
    assert splits.select("split", "history", "target").rows() == [
        ("train", [], 1), ("valid", [1], 2), ("test", [1, 2], 3)]


def test_global_time_split_flags_cold_and_keeps_everything():
    rows = [("a", "x", 1), ("a", "y", 2), ("a", "z", 5), ("a", "w", 9),
            ("b", "x", 6), ("b", "q", 8)]  # b is only seen after the cut
    inter, _ = reindex(_inter(rows), pl.DataFrame({"item_id": ["x"]}))
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
    inter = _inter([("a", "x", t) for t in range(100)])
    assert time_cuts(inter, None, None) == (79, 89)
    with pytest.raises(ValueError, match="before valid_start"):
        time_cuts(inter, "50", "10")
