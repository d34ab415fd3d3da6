import pytest
import torch

from mmrec.metrics.breakdown import (grouped_metrics, history_bucket_labels, history_buckets,
                                      popularity_group_info, popularity_groups)
from mmrec.metrics.formulas import metrics_from_ranks


def test_popularity_groups_cold_items_and_equal_counts():
    #               pad  1  2  3  4  5  6  7  8  9 10
    pop = torch.tensor([0, 5, 0, 1, 9, 0, 2, 2, 7, 3, 4])
    g = popularity_groups(pop, 2)
    assert g[0] == 0                                    # padding
    assert g[[2, 5]].tolist() == [0, 0]                 # never seen in training -> group 0
    # 8 warm items sorted by popularity: 3(1) 6(2) 7(2) 9(3) | 10(4) 1(5) 8(7) 4(9)
    assert sorted(torch.nonzero(g == 1).flatten().tolist()) == [3, 6, 7, 9]
    assert sorted(torch.nonzero(g == 2).flatten().tolist()) == [1, 4, 8, 10]
    info = popularity_group_info(pop, g, 2)
    assert [(i["label"], i["n_items"], i["n_train_min"], i["n_train_max"]) for i in info] == [
        ("cold", 2, 0, 0), ("Q1", 4, 1, 3), ("Q2", 4, 4, 9)]


def test_popularity_groups_uneven_and_no_warm_items():
    pop = torch.cat([torch.zeros(1, dtype=torch.long), torch.arange(1, 8)])  # 7 warm items
    g = popularity_groups(pop, 3)
    counts = torch.bincount(g[1:], minlength=4).tolist()
    assert counts[0] == 0 and sorted(counts[1:]) == [2, 2, 3]
    # groups are monotone in popularity
    assert all(g[i] <= g[i + 1] for i in range(1, 7))
    assert popularity_groups(torch.zeros(5, dtype=torch.long), 4).tolist() == [0] * 5
    with pytest.raises(ValueError):
        popularity_groups(pop, 0)


def test_history_buckets_and_labels():
    edges = [3, 5, 10]
    assert history_bucket_labels(edges) == ["1-2", "3-4", "5-9", "10+"]
    assert history_bucket_labels([2]) == ["1", "2+"]
    lengths = torch.tensor([1, 2, 3, 4, 5, 9, 10, 40])
    assert history_buckets(lengths, edges).tolist() == [0, 0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError):
        history_buckets(lengths, [5, 3])


def test_grouped_metrics_are_metrics_of_each_subset():
    ranks = torch.tensor([1, 4, 20, 2, 7, 100])
    group = torch.tensor([0, 0, 1, 1, 1, 2])
    rows = grouped_metrics(ranks, group, 4, [5], labels=["a", "b", "c", "d"])
    assert [r["n_users"] for r in rows] == [2, 3, 1, 0]
    assert rows[1]["recall@5"] == pytest.approx(1 / 3)
    assert rows[0]["ndcg@5"] == metrics_from_ranks(torch.tensor([1, 4]), [5])["ndcg@5"]
    assert rows[3]["recall@5"] == 0.0 and rows[3]["label"] == "d"
