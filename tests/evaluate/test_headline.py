"""Headline metrics: a few keys per model, from either layout of metrics.json."""

from __future__ import annotations

import json

import pytest

from mmrec.evaluate.headline import headline, write_headline
from mmrec.paths import headline_path


def test_flat_and_nested_layouts_give_the_same_headline(tmp_path):
    flat = {"model": "m", "test_recall@10": 0.25, "test_ndcg@10": 0.125, "test_mrr@10": 0.1,
            "valid_recall@10": 0.5, "valid_ndcg@10": 0.3, "valid_mrr@10": 0.2, "test_recall@20": 0.9,
            "details": [{"split": "test"}]}
    nested = {"model": "m", "test": {"recall@10": 0.25, "ndcg@10": 0.125, "mrr@10": 0.1, "recall@20": 0.9},
              "valid": {"recall@10": 0.5, "ndcg@10": 0.3, "mrr@10": 0.2}}
    expect = {"test": {"recall@10": 0.25, "ndcg@10": 0.125, "mrr@10": 0.1},
              "valid": {"recall@10": 0.5, "ndcg@10": 0.3, "mrr@10": 0.2}}
    assert headline(flat) == headline(nested) == expect
    out = write_headline(flat, headline_path("m", tmp_path), [5, 10, 20])
    assert out == tmp_path / "metrics" / "m.json"
    assert json.loads(out.read_text()) == expect


def test_k_falls_back_to_the_smallest_evaluated_and_missing_metrics_fail(tmp_path):
    doc = {"test_recall@5": 0.2, "test_ndcg@5": 0.1, "test_mrr@5": 0.05}
    out = write_headline(doc, tmp_path / "h.json", [5, 20])
    assert json.loads(out.read_text()) == {"test": {"recall@5": 0.2, "ndcg@5": 0.1, "mrr@5": 0.05}}
    with pytest.raises(KeyError, match="evaluate.ks must include 10"):
        headline({"test_recall@5": 0.2})
