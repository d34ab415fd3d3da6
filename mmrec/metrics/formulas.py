"""The metric formulas, one per metric: every figure mmrec reports (validation in `train`, the
evaluate stage's tables and breakdowns, the report's bootstrap intervals) is a mean over users of
the per-user value `per_user` computes from a 1-based rank.

    recall@K = 1[rank <= K]                     (= HR@K: one target per user)
    ndcg@K   = 1[rank <= K] / log2(rank + 1)
    mrr@K    = 1[rank <= K] / rank

NumPy only (no torch): the report stage reads ranks.parquet and must start fast.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from mmrec.metrics.params import METRICS, parse_metric

def per_user(ranks: "np.ndarray | Sequence[int]", metric: str) -> np.ndarray:
    """[U] float64 per-user values of `metric` (`recall@10`, `ndcg@20`, `mrr@5`) from 1-based
    ranks [U] (a NumPy array, a list, or a CPU tensor)."""
    name, k = parse_metric(metric)
    r = np.asarray(ranks, dtype=np.float64)
    hit = r <= k
    if name == "recall":
        return hit.astype(np.float64)
    if name == "ndcg":
        return np.where(hit, 1.0 / np.log2(r + 1.0), 0.0)
    return np.where(hit, 1.0 / r, 0.0)


def metrics_from_ranks(ranks: "np.ndarray | Sequence[int]", ks: Sequence[int]) -> dict[str, float]:
    """{recall@K, ndcg@K, mrr@K for K in ks}: the mean over users of `per_user` (0.0 for no users)."""
    r = np.asarray(ranks, dtype=np.float64)
    return {f"{name}@{k}": float(per_user(r, f"{name}@{k}").mean()) if r.size else 0.0
            for k in ks for name in METRICS}
