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
