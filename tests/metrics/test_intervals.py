import numpy as np
import pytest

from mmrec.metrics.formulas import per_user
from mmrec.metrics.intervals import (bootstrap_interval, holm, mark_holm, metric_intervals, paired_difference,
                                     paired_table, verdict)


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


def test_verdicts_tell_equivalence_from_inconclusive():
    assert verdict(0.001, 0.004, 0.005) == "better"
    assert verdict(-0.02, -0.001, 0.005) == "worse"
    assert verdict(-0.004, 0.003, 0.005) == "equivalent"
    assert verdict(-0.004, 0.006, 0.005) == "inconclusive"     # contains zero, but not inside the margin
    assert verdict(-0.005, 0.001, 0.005) == "inconclusive"     # on the margin is not inside it


def test_p_value_agrees_with_the_interval():
    rng = np.random.default_rng(2)
    for shift in (0.0, 0.02, 0.05, -0.05):
        values = rng.normal(shift, 0.5, size=2000)
        ci = bootstrap_interval(values, n_boot=2000)
        excludes = ci["lo"] > 0 or ci["hi"] < 0
        assert 0 < ci["p"] <= 1
        assert excludes == (ci["p"] < 0.05) or abs(ci["p"] - 0.05) < 0.01


def test_holm_adjusts_step_down_in_input_order():
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5]) == [0.5]
    adj = holm([float("nan"), 0.02, 0.02])
    assert np.isnan(adj[0]) and adj[1:] == pytest.approx([0.04, 0.04])
    diffs = [{"p": 0.03}, {"p": 0.04}, {"p": 0.001}]     # each below 0.05 alone
    mark_holm(diffs)
    assert [d["holm_significant"] for d in diffs] == [False, False, True]


def test_paired_table_verdicts_and_one_holm_family():
    rng = np.random.default_rng(3)
    base = rng.integers(1, 40, size=4000)
    better = np.where(rng.random(4000) < 0.1, 1, base)
    rows = paired_table(better, base, ["recall@10", "ndcg@10", "mrr@10"], n_boot=500, margin=0.005)
    assert [r["metric"] for r in rows] == ["recall@10", "ndcg@10", "mrr@10"]
    assert all(r["verdict"] == "better" and r["holm_significant"] for r in rows)
    same = paired_table(base, base, ["recall@10"], n_boot=500, margin=0.005)[0]
    assert same["verdict"] == "equivalent" and not same["holm_significant"]


def test_seed_level_interval_is_a_t_interval_over_the_seed_pairs():
    from mmrec.metrics.intervals import seed_level_interval

    # the README's KDSR vs KDSR-without-SKD/CKD seed pairs: t(2) = 4.303 makes three seeds wide
    out = seed_level_interval([-0.0007, 0.0027, -0.0032], margin=0.005)
    assert out["n"] == 3 and out["mean"] == pytest.approx(-0.0004)
    assert out["sd"] == pytest.approx(0.0029614, abs=1e-6)
    assert out["lo"] == pytest.approx(-0.0004 - 4.3027 * 0.0029614 / 3 ** 0.5, abs=1e-5)
    assert out["hi"] == pytest.approx(-0.0004 + 4.3027 * 0.0029614 / 3 ** 0.5, abs=1e-5)
    assert out["verdict"] == "inconclusive"
    tight = seed_level_interval([0.0101, 0.0099, 0.0100, 0.0100], margin=0.005)
    assert tight["verdict"] == "better" and tight["lo"] > 0.0098
    assert seed_level_interval([0.001, 0.0011, 0.0009], margin=0.005)["verdict"] == "better"
    assert seed_level_interval([0.001, -0.001, 0.0005], margin=0.005)["verdict"] == "equivalent"
    # the same count of hits moved on every seed: no zero-width interval, no verdict
    same = seed_level_interval([3 / 1648, 3 / 1648], margin=0.005)
    assert same["verdict"] == "inconclusive" and np.isnan(same["lo"]) and "identical" in same["note"]
    assert seed_level_interval([0.0, 0.0, 0.0])["verdict"] == "inconclusive"
    one = seed_level_interval([0.02])
    assert one["n"] == 1 and np.isnan(one["lo"]) and one["verdict"] == "inconclusive"
