"""`mmrec paired A B`: any two results folders, paired on their users."""

import json

import numpy as np
import polars as pl
import pytest

import mmrec.cli as cli
from mmrec.io import write_parquet
from mmrec.metrics.formulas import metrics_from_ranks
from mmrec.report.paired import paired_folders


def _results(folder, ranks, users=None, targets=None, split="test"):
    """A fake results folder: ranks.parquet with one row per user of `split` (+ a valid split)."""
    n = len(ranks)
    users = np.arange(n) if users is None else np.asarray(users)
    targets = np.arange(1, n + 1) if targets is None else np.asarray(targets)
    df = pl.DataFrame({"user_idx": users.astype("int32"), "split": [split] * n,
                       "target": targets.astype("int32"), "rank": np.asarray(ranks).astype("int32")})
    other = df.with_columns(split=pl.lit("valid"), rank=pl.lit(1, pl.Int32))
    write_parquet(pl.concat([df, other]), folder / "ranks.parquet")
    return folder


@pytest.fixture
def pair(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.integers(1, 60, size=2000)
    better = np.where(rng.random(2000) < 0.1, 1, base)
    a = _results(tmp_path / "a", better)
    # the same users in another row order: pairing is by user, not by position
    order = rng.permutation(2000)
    b = _results(tmp_path / "b", base[order], users=order, targets=order + 1)
    return a, b, better, base


def test_paired_folders_pairs_by_user_and_matches_the_metrics(pair):
    a, b, better, base = pair
    out = paired_folders(a, b, k=10, n_boot=300)
    assert out["users"] == 2000 and [r["metric"] for r in out["rows"]] == ["recall@10", "ndcg@10", "mrr@10"]
    for r in out["rows"]:
        assert r["a"] == metrics_from_ranks(better, [10])[r["metric"]]
        assert r["b"] == metrics_from_ranks(base, [10])[r["metric"]]
        assert r["verdict"] == "better" and r["holm_significant"]
    same = paired_folders(b, b, n_boot=300)
    assert {r["verdict"] for r in same["rows"]} == {"equivalent"}
    valid = paired_folders(a, b, split="valid", n_boot=300)   # every valid rank is 1: no difference
    assert all(r["diff"] == 0 for r in valid["rows"])


def test_cli_paired_prints_differences_and_verdicts(pair, capsys):
    a, b, *_ = pair
    assert cli.main(["paired", str(a), str(b), "-k", "5", "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    for metric in ("recall@5", "ndcg@5", "mrr@5"):
        line = next(line for line in out.splitlines() if line.startswith(metric))
        assert line.endswith("better †")
    assert "Holm" in out and "200 resamples" in out and "2000 users paired" in out
    assert cli.main(["paired", str(a / "ranks.parquet"), str(b), "--json", "--bootstrap", "200",
                     "--margin", "0.01"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["margin"] == 0.01 and len(doc["rows"]) == 3


def test_paired_refuses_different_users_or_targets(tmp_path, capsys):
    a = _results(tmp_path / "a", [1, 2, 3, 4])
    fewer = _results(tmp_path / "fewer", [1, 2, 3])
    with pytest.raises(ValueError, match=r"1 only in .*a, 0 only in .*pair runs evaluated on the same users"):
        paired_folders(a, fewer, n_boot=100)
    shifted = _results(tmp_path / "shifted", [1, 2, 3, 4], targets=[1, 2, 3, 9])
    with pytest.raises(ValueError, match="1 of 4 users have different targets"):
        paired_folders(a, shifted, n_boot=100)
    assert cli.main(["paired", str(a), str(tmp_path / "none")]) == 1
    assert "ranks.parquet: not found" in capsys.readouterr().err
    assert cli.main(["paired", str(a), str(a), "--split", "nope"]) == 1
    assert "no 'nope' rows (splits present: test, valid)" in capsys.readouterr().err
    assert cli.main(["paired", str(a), str(a), "--bootstrap", "5"]) == 2


def test_several_folders_per_side_pool_the_seeds(tmp_path):
    rng = np.random.default_rng(1)
    a_runs = [rng.integers(1, 40, size=500) for _ in range(3)]
    b_runs = [rng.integers(1, 60, size=500) for _ in range(3)]
    fa = [_results(tmp_path / f"a{i}", r) for i, r in enumerate(a_runs)]
    fb = [_results(tmp_path / f"b{i}", r) for i, r in enumerate(b_runs)]
    out = paired_folders(fa, fb, k=10, n_boot=200)
    assert out["runs_a"] == out["runs_b"] == 3 and len(out["per_seed"]) == 3
    r10 = out["rows"][0]
    mean_a = np.mean([metrics_from_ranks(r, [10])["recall@10"] for r in a_runs])
    mean_b = np.mean([metrics_from_ranks(r, [10])["recall@10"] for r in b_runs])
    assert r10["a"] == pytest.approx(mean_a) and r10["diff"] == pytest.approx(mean_a - mean_b)
    one = paired_folders(fa[1], fb[1], k=10, n_boot=200)["rows"][0]
    assert out["per_seed"][1][0]["diff"] == pytest.approx(one["diff"])
    seed_diffs = [rows[0]["diff"] for rows in out["per_seed"]]
    across = out["across_seeds"][0]
    assert across["metric"] == "recall@10" and across["n"] == 3
    assert across["mean"] == pytest.approx(np.mean(seed_diffs)) and across["sd"] == pytest.approx(np.std(seed_diffs, ddof=1))
    assert paired_folders(fa, fb[:1], k=10, n_boot=200).get("per_seed") is None   # 3 vs 1: pooled only


def test_cli_paired_takes_comma_separated_seeds(tmp_path, capsys):
    fa = [_results(tmp_path / f"a{i}", np.full(300, 1 + i)) for i in range(2)]
    fb = [_results(tmp_path / f"b{i}", np.full(300, 50)) for i in range(2)]
    assert cli.main(["paired", ",".join(map(str, fa)), ",".join(map(str, fb)), "--bootstrap", "200"]) == 0
    out = capsys.readouterr().out
    assert "pooled over seeds: A 2 run(s), B 2 run(s)" in out and "seed pair 2" in out
    assert "across seeds: the 2 seed-pair differences" in out
    # every seed of A hits every target (recall 1 against 0): identical differences, no interval
    across = out.split("across seeds")[1].splitlines()
    assert any(l.startswith("recall@10") and "inconclusive (identical seed-pair differences" in l for l in across)
    assert any(l.startswith("ndcg@10") and "[" in l for l in across)
    # --json is strict JSON: the missing interval is null, not a bare NaN token
    assert cli.main(["paired", ",".join(map(str, fa)), ",".join(map(str, fb)), "--bootstrap", "200", "--json"]) == 0
    text = capsys.readouterr().out
    recall = json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))["across_seeds"][0]
    assert recall["metric"] == "recall@10" and recall["lo"] is None and recall["hi"] is None


def _dataset(tmp_path, n_train):
    """data/<name>/ingest/items.parquet with items 1..N of training counts `n_train`."""
    n = len(n_train)
    write_parquet(pl.DataFrame({"item_idx": np.arange(1, n + 1, dtype="int32"),
                                "n_train": np.asarray(n_train, dtype="int64")}),
                  tmp_path / "data" / "toy" / "ingest" / "items.parquet")
    return tmp_path / "data" / "toy"


def test_targets_cold_or_a_quartile_pairs_only_those_users(tmp_path, capsys):
    # items 1-4 cold, 5-24 warm with counts 1..20: Q1 = items 5-9 (the 5 rarest warm)
    data = _dataset(tmp_path, [0] * 4 + list(range(1, 21)))
    targets = np.tile(np.arange(1, 25), 10)                     # 240 users, 10 per item
    rng = np.random.default_rng(3)
    rank_b = rng.integers(1, 40, size=240)
    cold = targets <= 4
    rank_a = np.where(cold, 1, rank_b + 30)                     # A: hits every cold target, worse elsewhere
    a = _results(data / "results" / "a", rank_a, targets=targets)
    b = _results(data / "results" / "b", rank_b, targets=targets)
    whole = paired_folders(a, b, n_boot=200)
    assert whole["rows"][0]["verdict"] == "worse" and whole["users"] == 240
    out = paired_folders(a, b, n_boot=200, targets="cold")      # items.parquet found from A's folder
    assert out["users"] == 40 and out["rows"][0]["a"] == 1.0
    assert out["rows"][0]["b"] == metrics_from_ranks(rank_b[cold], [10])["recall@10"]
    assert out["rows"][0]["verdict"] == "better"
    q1 = (targets >= 5) & (targets <= 9)
    out = paired_folders(a, b, n_boot=200, targets="Q1", items=data / "ingest" / "items.parquet")
    assert out["users"] == 50 and out["rows"][0]["b"] == metrics_from_ranks(rank_b[q1], [10])["recall@10"]
    with pytest.raises(ValueError, match="expected one of all, cold, Q1, Q2, Q3, Q4"):
        paired_folders(a, b, n_boot=200, targets="Q5")
    assert cli.main(["paired", str(a), str(b), "--targets", "cold", "--bootstrap", "200"]) == 0
    text = capsys.readouterr().out
    assert "40 users paired (targets in popularity group cold" in text
    assert next(l for l in text.splitlines() if l.startswith("recall@10")).endswith("better †")
    # --groups regroups the warm items: with 2, Q1 holds the 10 rarest (items 5-14)
    assert cli.main(["paired", str(a), str(b), "--targets", "Q1", "--groups", "2", "--bootstrap", "200"]) == 0
    assert "100 users paired (targets in popularity group Q1" in capsys.readouterr().out
    assert cli.main(["paired", str(a), str(b), "--targets", "Q1", "--groups", "0"]) != 0
    for margin in ("0", "nan", "inf"):                      # no interval lies inside these
        assert cli.main(["paired", str(a), str(b), "--margin", margin]) != 0


def test_targets_refuse_an_empty_group_or_another_dataset(tmp_path):
    data = _dataset(tmp_path, [3, 5, 8, 9])                     # no cold item
    a = _results(data / "results" / "a", [1, 2, 3, 4], targets=[1, 2, 3, 4])
    with pytest.raises(ValueError, match="no test user has a target in popularity group 'cold'"):
        paired_folders(a, a, n_boot=100, targets="cold")
    far = _results(data / "results" / "far", [1, 2], targets=[1, 7])
    with pytest.raises(ValueError, match="4 items, but a target is item 7"):
        paired_folders(far, far, n_boot=100, targets="Q1")
    with pytest.raises(FileNotFoundError, match="items.parquet: not found"):
        paired_folders(a, a, n_boot=100, targets="cold", items=tmp_path / "items.parquet")
