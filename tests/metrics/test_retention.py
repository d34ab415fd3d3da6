import math

import numpy as np
import pytest
import torch

from mmrec.metrics.retention import modality_retention, retention_pairs


def test_pairs_are_valid_fixed_and_seeded():
    has = torch.tensor([True, True, False, True, True, False, True])  # row 0 flag must be ignored
    p = retention_pairs(has, 500, seed=7)
    assert p.shape == (500, 2) and p.dtype == torch.long
    assert (p[:, 0] != p[:, 1]).all()
    assert set(p.flatten().tolist()) <= {1, 3, 4, 6}
    # every eligible item is used (uniform over eligible items, 500 draws over 4 items)
    assert set(p.flatten().tolist()) == {1, 3, 4, 6}
    assert torch.equal(p, retention_pairs(has, 500, seed=7))
    assert not torch.equal(p, retention_pairs(has, 500, seed=8))


def test_pairs_degenerate_cases():
    assert retention_pairs(torch.tensor([True, True, False]), 10, 0).shape == (0, 2)
    assert retention_pairs(torch.tensor([False, True, True]), 0, 0).shape == (0, 2)
    with pytest.raises(ValueError):
        retention_pairs(torch.tensor([False, True, True]), -1, 0)


def _np_cos(x, p):
    a, b = x[p[:, 0]], x[p[:, 1]]
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def test_pearson_matches_numpy():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(50, 16, generator=g)
    table = feats[:, :8] + 0.5 * torch.randn(50, 8, generator=g)
    pairs = retention_pairs(torch.ones(50, dtype=torch.bool), 300, seed=1)
    got = modality_retention(table, feats, pairs)
    ref = np.corrcoef(_np_cos(table.numpy(), pairs.numpy()), _np_cos(feats.numpy(), pairs.numpy()))[0, 1]
    assert got == pytest.approx(ref, abs=1e-6)


def test_retention_extremes():
    g = torch.Generator().manual_seed(3)
    feats = torch.randn(40, 12, generator=g)
    pairs = retention_pairs(torch.ones(40, dtype=torch.bool), 200, seed=2)
    # a rotation and scaling keeps every cosine: perfect retention
    q, _ = torch.linalg.qr(torch.randn(12, 12, generator=g))
    assert modality_retention(3.0 * feats @ q, feats, pairs) == pytest.approx(1.0, abs=1e-6)
    # an unrelated random table retains almost nothing
    unrelated = modality_retention(torch.randn(40, 12, generator=g), feats, pairs)
    assert abs(unrelated) < 0.3
    # constant similarities have no defined correlation
    assert math.isnan(modality_retention(torch.ones(40, 4), feats, pairs))
    assert math.isnan(modality_retention(feats, feats, torch.zeros((0, 2), dtype=torch.long)))


def test_spearman_is_rank_based():
    g = torch.Generator().manual_seed(5)
    feats = torch.randn(60, 10, generator=g)
    pairs = retention_pairs(torch.ones(60, dtype=torch.bool), 400, seed=4)
    fcos = _np_cos(feats.numpy(), pairs.numpy())
    # A noisy copy of the features, compared with a rank correlation computed independently.
    table = feats + 0.3 * torch.randn(60, 10, generator=g)
    tcos = _np_cos(table.numpy(), pairs.numpy())

    def avg_rank(v):
        order = np.argsort(v, kind="stable")
        r = np.empty(len(v))
        r[order] = np.arange(len(v))
        for val in np.unique(v):  # ties share their mean rank
            m = v == val
            r[m] = r[m].mean()
        return r

    ref = np.corrcoef(avg_rank(tcos), avg_rank(fcos))[0, 1]
    got = modality_retention(table, feats, pairs, method="spearman")
    assert got == pytest.approx(ref, abs=1e-6)
    with pytest.raises(ValueError, match="known: pearson, spearman"):
        modality_retention(table, feats, pairs, method="kendall")


def test_spearman_handles_ties():
    from mmrec.metrics.retention import _average_ranks

    r = _average_ranks(torch.tensor([3.0, 1.0, 3.0, 2.0, 1.0]))
    assert r.tolist() == [3.5, 0.5, 3.5, 2.0, 0.5]


def test_row_mismatch_is_an_error():
    with pytest.raises(ValueError, match="rows"):
        modality_retention(torch.randn(5, 3), torch.randn(6, 3), torch.tensor([[1, 2], [2, 3]]))
