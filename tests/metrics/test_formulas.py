"""One formula per metric: the per-user values, and every figure built on them agrees."""

import numpy as np
import pytest
import torch

from evaluate_fakes import FakeModel, random_split
from mmrec.metrics.formulas import metrics_from_ranks, parse_metric, per_user
from mmrec.metrics.intervals import metric_intervals, paired_difference
from mmrec.metrics.ranking import evaluate_model, rank_model


def test_per_user_values_match_the_metric_definitions():
    ranks = np.array([1, 3, 10, 11])
    assert per_user(ranks, "recall@10").tolist() == [1, 1, 1, 0]
    assert per_user(ranks, "ndcg@10") == pytest.approx([1.0, 0.5, 1 / np.log2(11), 0.0])
    assert per_user(ranks, "mrr@5") == pytest.approx([1.0, 1 / 3, 0.0, 0.0])
    with pytest.raises(ValueError, match="recall, ndcg, mrr"):
        per_user(ranks, "hr@10")
    with pytest.raises(ValueError, match="<name>@<K>"):
        per_user(ranks, "recall")


def test_parse_metric_names_the_known_metrics():
    assert parse_metric("ndcg@20") == ("ndcg", 20)
    with pytest.raises(ValueError, match="K >= 1"):
        parse_metric("mrr@0")


def test_bootstrap_point_estimate_equals_the_ranking_metric_on_the_same_ranks():
    """The report's interval means and the evaluate stage's figures come from one formula: on the
    ranks a model produces, they are equal to the last bit, for every metric and cutoff."""
    model = FakeModel(n_items=150, dim=8, seed=3, levels=5)
    split = random_split(90, 150, max_len=6, seed=4)
    ks = [1, 5, 10, 20]
    ranks = rank_model(model, split.histories, split.targets, mask_items=split.full_history)
    overall = evaluate_model(model, split.histories, split.targets, ks=ks, mask_items=split.full_history)
    names = list(overall)
    assert names == [f"{m}@{k}" for k in ks for m in ("recall", "ndcg", "mrr")]
    ci = metric_intervals(ranks.numpy(), names, n_boot=200)
    assert {m: ci[m]["mean"] for m in names} == overall
    assert metrics_from_ranks(ranks, ks) == overall
    worse = torch.clamp(ranks + 3, max=151)
    for m in names:
        d = paired_difference(ranks.numpy(), worse.numpy(), m, n_boot=200)
        assert d["a"] == overall[m]
        assert d["b"] == metrics_from_ranks(worse, ks)[m]
