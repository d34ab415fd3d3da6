import numpy as np
import pytest

from mmrec.metrics.formulas import per_user
from mmrec.metrics.intervals import bootstrap_interval, metric_intervals, paired_difference


def test_interval_brackets_the_mean_shrinks_with_users_and_repeats():
    rng = np.random.default_rng(0)
    small = (rng.random(200) < 0.3).astype(float)
    large = (rng.random(20000) < 0.3).astype(float)
    a, b = bootstrap_interval(small), bootstrap_interval(large)
    assert a["lo"] < a["mean"] < a["hi"] and b["lo"] < b["mean"] < b["hi"]
    assert (b["hi"] - b["lo"]) < (a["hi"] - a["lo"]) / 5                  # ~ 1/sqrt(100)
    # binomial standard error: the 95% interval is about +-1.96 * sqrt(p(1-p)/n)
    assert b["hi"] - b["lo"] == pytest.approx(2 * 1.96 * np.sqrt(0.3 * 0.7 / 20000), rel=0.15)
    assert bootstrap_interval(small) == a                                  # seeded: reruns agree


def test_paired_difference_sees_what_unpaired_intervals_cannot():
    rng = np.random.default_rng(1)
    base = rng.integers(1, 40, size=3000)
    better = np.where(rng.random(3000) < 0.05, 1, base)   # same users, 5% moved to rank 1
    d = paired_difference(better, base, "recall@10")
    assert d["diff"] > 0 and d["lo"] > 0 and d["significant"]
    assert d["a"] == pytest.approx(per_user(better, "recall@10").mean())
    same = paired_difference(base, base, "ndcg@10")
    assert same["diff"] == 0 and not same["significant"]
    noise = paired_difference(rng.permutation(base), base, "recall@10")
    assert noise["lo"] < 0 < noise["hi"] and not noise["significant"]
    with pytest.raises(ValueError, match="pair the same users"):
        paired_difference(base[:10], base, "recall@10")


def test_metric_intervals_names_each_metric():
    out = metric_intervals(np.array([1, 2, 50, 70]), ["recall@10", "ndcg@10"], n_boot=200)
    assert set(out) == {"recall@10", "ndcg@10"} and out["recall@10"]["mean"] == 0.5
