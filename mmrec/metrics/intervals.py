"""Confidence intervals over users: how sure a metric, or a difference between two models, is.

Every metric is a mean over users of a per-user value (`mmrec.metrics.formulas.per_user`, the
one formula per metric), so the users are the resampling unit and an interval's `mean` is the
figure the evaluate stage reports. Intervals are percentile bootstrap intervals; a comparison resamples the same
users for both models (paired), which is what makes a small difference between two strong models
detectable at all. "A beats B" means the paired interval of the difference excludes zero.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmrec.metrics.formulas import per_user

#: One seed for every interval: reruns give the same bounds.
BOOTSTRAP_SEED = 20260
LEVEL = 0.95


def _resample_means(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """[n_boot] means of `values` [U] over bootstrap resamples of the users, in chunks of
    resamples so the index block stays near 20M entries whatever U is."""
    rng = np.random.default_rng(seed)
    n = values.shape[0]
    chunk = max(1, min(100, 20_000_000 // n))
    out = np.empty(n_boot, dtype=np.float64)
    for start in range(0, n_boot, chunk):
        m = min(chunk, n_boot - start)
        idx = rng.integers(0, n, size=(m, n), dtype=np.int64 if n > 2**31 - 1 else np.int32)
        out[start:start + m] = values[idx].mean(axis=1)
    return out


def bootstrap_interval(values: np.ndarray, n_boot: int = 1000, seed: int = BOOTSTRAP_SEED,
                       level: float = LEVEL) -> dict[str, float]:
    """{mean, lo, hi}: the mean of `values` [U] and its percentile bootstrap interval."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan")}
    means = _resample_means(values, n_boot, seed)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    return {"mean": float(values.mean()), "lo": float(lo), "hi": float(hi)}


def metric_intervals(ranks: np.ndarray, metrics: Sequence[str], n_boot: int = 1000,
                     seed: int = BOOTSTRAP_SEED) -> dict[str, dict[str, float]]:
    """{metric: {mean, lo, hi}} for one model's ranks [U]."""
    return {m: bootstrap_interval(per_user(ranks, m), n_boot, seed) for m in metrics}


def paired_difference(ranks_a: np.ndarray, ranks_b: np.ndarray, metric: str, n_boot: int = 1000,
                      seed: int = BOOTSTRAP_SEED) -> dict[str, Any]:
    """Mean of metric(A) - metric(B) over the same users, its paired bootstrap interval, the
    relative difference, and whether the interval excludes zero (`significant`).

    ranks_a, ranks_b: [U] ranks of the same users in the same order.
    """
    a = per_user(ranks_a, metric)
    b = per_user(ranks_b, metric)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {a.shape[0]} vs {b.shape[0]} users; pair the same users")
    ci = bootstrap_interval(a - b, n_boot, seed)
    base = float(b.mean()) if b.size else float("nan")
    return {"metric": metric, "a": float(a.mean()) if a.size else float("nan"), "b": base,
            "diff": ci["mean"], "lo": ci["lo"], "hi": ci["hi"],
            "relative": ci["mean"] / base if base else float("nan"),
            "significant": bool(ci["lo"] > 0 or ci["hi"] < 0)}
