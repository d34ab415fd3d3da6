"""Confidence intervals over users: how sure a metric, or a difference between two models, is.

Every metric is a mean over users of a per-user value (`mmrec.metrics.formulas.per_user`, the
one formula per metric), so the users are the resampling unit and an interval's `mean` is the
figure the evaluate stage reports. Intervals are percentile bootstrap intervals; a comparison resamples the same
users for both models (paired), which is what makes a small difference between two strong models
detectable at all.

A paired comparison ends in one verdict (`verdict`): `better` / `worse` when its 95% interval
excludes zero, `equivalent` when the interval lies inside ±margin (the equivalence margin: a
difference too small to matter), `inconclusive` otherwise: an interval that merely contains zero
is not evidence of "no difference". Across the comparisons of one table, `holm` adjusts the
bootstrap p-values for multiplicity (Holm's step-down method, family-wise error 5%).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from mmrec.metrics.formulas import per_user
from mmrec.metrics.params import EQUIVALENCE_MARGIN, N_BOOT

#: One seed for every interval: reruns give the same bounds.
BOOTSTRAP_SEED = 20260
LEVEL = 0.95
VERDICTS = ("better", "worse", "equivalent", "inconclusive")


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


def bootstrap_interval(values: np.ndarray, n_boot: int = N_BOOT, seed: int = BOOTSTRAP_SEED,
                       level: float = LEVEL) -> dict[str, float]:
    """{mean, lo, hi, p}: the mean of `values` [U], its percentile bootstrap interval, and the
    two-sided bootstrap p-value of "the mean is zero" (the share of resampled means on the far
    side of zero, doubled; never below 1/(n_boot+1)). The interval excludes zero at 95% exactly
    when p is below about 0.05."""
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return {"mean": float("nan"), "lo": float("nan"), "hi": float("nan"), "p": float("nan")}
    means = _resample_means(values, n_boot, seed)
    tail = (1.0 - level) / 2.0 * 100.0
    lo, hi = np.percentile(means, [tail, 100.0 - tail])
    far = min(int((means <= 0).sum()), int((means >= 0).sum()))
    p = min(1.0, 2.0 * (far + 1) / (n_boot + 1))
    return {"mean": float(values.mean()), "lo": float(lo), "hi": float(hi), "p": p}


def verdict(lo: float, hi: float, margin: float) -> str:
    """One of VERDICTS for a paired interval [lo, hi] of A - B: better / worse when it excludes
    zero, equivalent when it lies strictly inside ±margin, inconclusive otherwise."""
    if lo > 0:
        return "better"
    if hi < 0:
        return "worse"
    if -margin < lo and hi < margin:
        return "equivalent"
    return "inconclusive"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-adjusted p-values, in the input order: the i-th smallest p is multiplied by (m - i)
    (i from 0) and made monotone; a comparison is Holm-significant when its adjusted p < 0.05.
    NaN p-values (no users) stay NaN and do not count towards m."""
    p = np.asarray(p_values, dtype=np.float64)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(~np.isnan(p))
    order = ok[np.argsort(p[ok], kind="stable")]
    m = len(order)
    running = 0.0
    for i, j in enumerate(order):
        running = max(running, min(1.0, (m - i) * p[j]))
        out[j] = running
    return out.tolist()


def mark_holm(diffs: Sequence[dict[str, Any]], alpha: float = 1.0 - LEVEL) -> None:
    """Add `p_holm` and `holm_significant` to each `paired_difference` result of one family (one
    table's comparisons), in place."""
    for d, adj in zip(diffs, holm([d["p"] for d in diffs])):
        d["p_holm"] = adj
        d["holm_significant"] = bool(adj < alpha)


def metric_intervals(ranks: np.ndarray, metrics: Sequence[str], n_boot: int = N_BOOT,
                     seed: int = BOOTSTRAP_SEED) -> dict[str, dict[str, float]]:
    """{metric: {mean, lo, hi}} for one model's ranks [U]."""
    return {m: bootstrap_interval(per_user(ranks, m), n_boot, seed) for m in metrics}


def _seed_mean(ranks: "np.ndarray | Sequence[np.ndarray]", metric: str) -> tuple[np.ndarray, int]:
    """([U] per-user metric, averaged over the runs when `ranks` is a sequence of [U] arrays (the
    seeds of one model, same users in the same order), number of runs)."""
    runs = [ranks] if isinstance(ranks, np.ndarray) else list(ranks)
    if not runs:
        raise ValueError("paired_difference: no runs given")
    values = [per_user(np.asarray(r), metric) for r in runs]
    if len({v.shape for v in values}) != 1:
        raise ValueError(f"paired_difference: the runs hold {sorted({v.shape[0] for v in values})} "
                         "users; pair the same users")
    return np.mean(values, axis=0), len(runs)


def paired_difference(ranks_a: "np.ndarray | Sequence[np.ndarray]", ranks_b: "np.ndarray | Sequence[np.ndarray]",
                      metric: str, n_boot: int = N_BOOT, seed: int = BOOTSTRAP_SEED,
                      margin: float = EQUIVALENCE_MARGIN) -> dict[str, Any]:
    """Mean of metric(A) - metric(B) over the same users, its paired bootstrap interval and
    p-value, the relative difference, whether the interval excludes zero (`significant`,
    unadjusted) and the `verdict` at equivalence margin `margin`.

    ranks_a, ranks_b: [U] ranks of the same users in the same order, or each a sequence of such
    arrays, one per training seed (pooled: a user's value is the mean over that model's seeds;
    the users are resampled, the trained runs held fixed, so the seed-to-seed spread is reported
    beside it, not inside the interval). `runs_a` / `runs_b` say how many were pooled.
    """
    a, runs_a = _seed_mean(ranks_a, metric)
    b, runs_b = _seed_mean(ranks_b, metric)
    if a.shape != b.shape:
        raise ValueError(f"paired_difference: {a.shape[0]} vs {b.shape[0]} users; pair the same users")
    ci = bootstrap_interval(a - b, n_boot, seed)
    base = float(b.mean()) if b.size else float("nan")
    return {"metric": metric, "a": float(a.mean()) if a.size else float("nan"), "b": base,
            "diff": ci["mean"], "lo": ci["lo"], "hi": ci["hi"], "p": ci["p"],
            "relative": ci["mean"] / base if base else float("nan"),
            "significant": bool(ci["lo"] > 0 or ci["hi"] < 0),
            "margin": margin, "verdict": verdict(ci["lo"], ci["hi"], margin),
            "runs_a": runs_a, "runs_b": runs_b}


def paired_table(ranks_a: "np.ndarray | Sequence[np.ndarray]", ranks_b: "np.ndarray | Sequence[np.ndarray]",
                 metrics: Sequence[str], n_boot: int = N_BOOT,
                 margin: float = EQUIVALENCE_MARGIN, seed: int = BOOTSTRAP_SEED) -> list[dict[str, Any]]:
    """`paired_difference` of every metric in `metrics` for one pair of models, Holm-adjusted
    across those metrics (one family)."""
    rows = [paired_difference(ranks_a, ranks_b, m, n_boot, seed, margin) for m in metrics]
    mark_holm(rows)
    return rows


def seed_level_interval(diffs: Sequence[float], margin: float = EQUIVALENCE_MARGIN,
                        level: float = LEVEL) -> dict[str, Any]:
    """Across retrainings: {mean, sd, n, lo, hi, verdict} of the per-seed differences A - B
    (seed i of A against seed i of B), a Student t interval with n - 1 degrees of freedom.

    The pooled bootstrap holds the trained runs fixed and resamples users; this one treats each
    seed pair as one draw of "train both again", so it is the interval a claim about the methods
    (not about these runs) needs. With n = 3 it is wide (t quantile 4.30). n < 2, or differences
    that are all the same, give NaN bounds and "inconclusive" (the latter with a `note`).
    """
    x = np.asarray(diffs, dtype=np.float64)
    n = int(x.size)
    mean = float(x.mean()) if n else float("nan")
    sd = float(x.std(ddof=1)) if n >= 2 else float("nan")
    # Identical differences (a discrete metric over few users moved by the same count on every
    # seed) would give a zero-width t interval, a precision n seeds cannot give.
    note = "identical seed-pair differences: no spread to estimate" \
        if n >= 2 and sd <= 1e-12 * max(1.0, abs(mean)) else None
    if n < 2 or note:
        out = {"mean": mean, "sd": sd, "n": n, "lo": float("nan"), "hi": float("nan"), "verdict": "inconclusive"}
        return out | ({"note": note} if note else {})
    from scipy.stats import t   # here only: the rest of this module is NumPy

    half = float(t.ppf(0.5 + level / 2.0, n - 1)) * sd / np.sqrt(n)
    return {"mean": mean, "sd": sd, "n": n, "lo": mean - half, "hi": mean + half,
            "verdict": verdict(mean - half, mean + half, margin)}
