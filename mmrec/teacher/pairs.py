"""Training sequences and the seeded sample of item pairs the codebook is fitted on.

Co-occurring pairs are the pairs the KDSR student is supervised on: the unique items of one
training sequence, strict upper triangle (i < j). They are enumerated implicitly (a global pair
index decoded to (sequence, i, j)), so sampling a few million out of billions never builds the
full list.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl


@dataclass
class SequenceSets:
    """Sorted unique featured items of each training sequence, in CSR form.

    items:   [total] int64, the items of sequence s are items[offsets[s]:offsets[s+1]] (ascending)
    offsets: [U+1] int64
    """

    items: np.ndarray
    offsets: np.ndarray

    @property
    def counts(self) -> np.ndarray:  # [U]
        return np.diff(self.offsets)

    @property
    def n_pairs(self) -> int:
        c = self.counts
        return int((c * (c - 1) // 2).sum())


def training_sequences(splits: pl.DataFrame | pl.LazyFrame, source: str | Path = "splits.parquet") -> pl.DataFrame:
    """One row per training sequence: `seq` (row number), `item` exploded, oldest first.

    The training sequence of a `split == "train"` row is history + [target].
    """
    lf = splits.lazy() if isinstance(splits, pl.DataFrame) else splits
    missing = {"split", "history", "target"} - set(lf.collect_schema().names())
    if missing:
        raise ValueError(f"{source}: missing column(s) {sorted(missing)}")
    return (
        lf.filter(pl.col("split") == "train")
        .select(pl.concat_list([pl.col("history"), pl.col("target")]).alias("item"))
        .with_row_index("seq")
        .explode("item")
        .filter(pl.col("item").is_not_null())
        .select(pl.col("seq").cast(pl.Int64), pl.col("item").cast(pl.Int64))
        .collect()
    )


def sequence_sets(seqs: pl.DataFrame, has_feature: np.ndarray, source: str | Path = "splits.parquet") -> SequenceSets:
    """Unique items with a feature per sequence (items without one are never paired)."""
    n_rows = len(has_feature)
    bad = seqs.filter((pl.col("item") < 1) | (pl.col("item") >= n_rows))
    if len(bad):
        raise ValueError(f"{source}: {len(bad)} training item ids outside 1..{n_rows - 1} "
                         f"(first: {bad['item'][0]}); features and splits disagree")
    # One sorted int64 key per (sequence, item): np.unique on it dedupes and orders in a few
    # copies of one column (a polars unique + sort on two columns peaked at ~20x that).
    seq = seqs["seq"].to_numpy()
    item = seqs["item"].to_numpy()
    n_seq = int(seq.max()) + 1 if len(seq) else 0
    key = seq.astype(np.int64) * n_rows + item
    key = np.unique(key[has_feature[item]])
    del seq, item
    counts = np.bincount(key // n_rows, minlength=n_seq)
    return SequenceSets(items=key % n_rows,
                        offsets=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64))


def _sample_indices(total: int, cap: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted distinct indices: all of range(total) if total <= cap, else `cap` of them uniformly.

    Memory O(cap) even when total is in the billions (no permutation of the whole range).
    """
    if total <= cap:
        return np.arange(total, dtype=np.int64)
    if total <= 4 * cap:
        return np.sort(rng.permutation(total)[:cap])
    picked = np.unique(rng.integers(0, total, size=cap + cap // 8 + 64))
    while len(picked) < cap:  # rare: too many collisions, draw more
        picked = np.unique(np.concatenate([picked, rng.integers(0, total, size=cap)]))
    return np.sort(picked[rng.permutation(len(picked))[:cap]])


def _triangle(k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Decode a strict-upper-triangle index ordered by column: k -> (a, b), a < b.

    Order (0,1),(0,2),(1,2),(0,3),...: the pairs among the first n items are exactly k < n(n-1)/2,
    whatever the sequence length.
    """
    b = np.floor((1 + np.sqrt(1 + 8 * k.astype(np.float64))) / 2).astype(np.int64)
    b -= (b * (b - 1) // 2 > k)        # float rounding guards
    b += ((b + 1) * b // 2 <= k)
    return k - b * (b - 1) // 2, b


def cooccurring_pairs(sets: SequenceSets, cap: int, seed: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Seeded sample of at most `cap` in-sequence pairs (i < j): (i [P], j [P], total available).

    Pairs keep their multiplicity across sequences: the sample follows the distribution of pairs
    the student is actually supervised on.
    """
    c = sets.counts
    per_seq = c * (c - 1) // 2                         # [U]
    ends = np.cumsum(per_seq)                          # [U]
    total = int(ends[-1]) if len(ends) else 0
    g = _sample_indices(total, cap, np.random.default_rng(seed))
    s = np.searchsorted(ends, g, side="right")         # sequence of each sampled pair
    a, b = _triangle(g - (ends[s] - per_seq[s]))
    base = sets.offsets[s]
    return sets.items[base + a], sets.items[base + b], total


def random_pairs(pool: np.ndarray, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` uniform pairs of distinct items drawn from `pool` (with replacement across pairs)."""
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    if len(pool) < 2:
        raise ValueError(f"random pairs need at least 2 candidate items, got {len(pool)}")
    rng = np.random.default_rng(seed)
    pi = rng.integers(0, len(pool), size=n)
    pj = (pi + rng.integers(1, len(pool), size=n)) % len(pool)  # never equal to pi, still uniform
    return pool[pi].astype(np.int64), pool[pj].astype(np.int64)
