"""Co-occurring and random pair sampling against brute-force enumeration."""

from __future__ import annotations

from collections import Counter
from itertools import combinations

import numpy as np
import polars as pl
import pytest

from mmrec.teacher.pairs import (
    _sample_indices,
    _triangle,
    cooccurring_pairs,
    random_pairs,
    sequence_sets,
    training_sequences,
)
from teacher_synth import MISSING_TEXT, N_ITEMS, synth_splits


def _has() -> np.ndarray:
    has = np.ones(N_ITEMS + 1, dtype=bool)
    has[0] = False
    has[list(MISSING_TEXT)] = False
    return has


def _brute_pairs(splits: pl.DataFrame, has: np.ndarray) -> Counter:
    out: Counter = Counter()
    for row in splits.filter(pl.col("split") == "train").iter_rows(named=True):
        items = sorted({i for i in row["history"] + [row["target"]] if has[i]})
        out.update(combinations(items, 2))
    return out


def test_triangle_decoding_matches_enumeration() -> None:
    ref = [(a, b) for b in range(70) for a in range(b)]
    a, b = _triangle(np.arange(len(ref)))
    assert list(zip(a.tolist(), b.tolist())) == ref


def test_all_cooccurring_pairs_when_under_the_cap() -> None:
    splits, has = synth_splits(), _has()
    sets = sequence_sets(training_sequences(splits), has)
    i, j, total = cooccurring_pairs(sets, cap=10**9, seed=0)
    ref = _brute_pairs(splits, has)
    assert total == sum(ref.values()) == len(i)
    assert Counter(zip(i.tolist(), j.tolist())) == ref
    assert np.all(i < j) and has[i].all() and has[j].all()  # strict upper triangle, featured only
    assert not set(MISSING_TEXT) & (set(i.tolist()) | set(j.tolist()))


def test_capped_sample_is_seeded_subset() -> None:
    splits, has = synth_splits(), _has()
    sets = sequence_sets(training_sequences(splits), has)
    i, j, total = cooccurring_pairs(sets, cap=100, seed=7)
    i2, j2, _ = cooccurring_pairs(sets, cap=100, seed=7)
    i3, _, _ = cooccurring_pairs(sets, cap=100, seed=8)
    assert len(i) == 100 < total
    assert np.array_equal(i, i2) and np.array_equal(j, j2) and not np.array_equal(i, i3)
    sample, ref = Counter(zip(i.tolist(), j.tolist())), _brute_pairs(splits, has)
    assert all(ref[p] >= n for p, n in sample.items())  # a sub-multiset of the real pairs


def test_training_sequences_use_train_rows_only() -> None:
    splits = synth_splits()
    seqs = training_sequences(splits)
    train = splits.filter(pl.col("split") == "train")
    assert seqs["seq"].n_unique() == len(train)
    assert len(seqs) == int(train["history"].list.len().sum()) + len(train)
    assert seqs["item"].max() <= N_ITEMS - 10  # cold items (valid/test targets only) are absent
    with pytest.raises(ValueError, match="missing column"):
        training_sequences(splits.drop("history"))
    with pytest.raises(ValueError, match="outside 1..50"):
        sequence_sets(seqs, np.ones(51, dtype=bool))


@pytest.mark.parametrize("total,cap", [(50, 100), (300, 100), (10**12, 1000)])
def test_sample_indices_distinct_and_in_range(total: int, cap: int) -> None:
    g = _sample_indices(total, cap, np.random.default_rng(0))
    assert len(g) == min(total, cap) and len(np.unique(g)) == len(g)
    assert g.min() >= 0 and g.max() < total and np.all(np.diff(g) > 0)


def test_random_pairs_distinct_items_from_pool() -> None:
    pool = np.array([4, 8, 15, 16, 23, 42])
    i, j = random_pairs(pool, 5000, seed=1)
    assert np.all(i != j) and np.isin(i, pool).all() and np.isin(j, pool).all()
    # every ordered pair of distinct items shows up (uniform over 30 of them)
    assert len(set(zip(i.tolist(), j.tolist()))) == 30
    with pytest.raises(ValueError, match="at least 2"):
        random_pairs(np.array([3]), 4, seed=0)
