import math

import pytest
import torch

from mmrec.objectives.correlation_kd import (
    async_lr_scale,
    ckd_loss,
    kd_weights,
    sequence_pairs,
    skd_loss,
)


def test_sequence_pairs_strict_upper_unique_no_padding():
    seq = torch.tensor([[0, 0, 3, 1, 3],      # unique {1, 3}: one pair
                        [5, 2, 7, 0, 0],      # {2, 5, 7}: three pairs
                        [0, 0, 0, 0, 4]])     # a single item: no pair
    b, i, j = sequence_pairs(seq)
    got = sorted(zip(b.tolist(), i.tolist(), j.tolist()))
    assert got == [(0, 1, 3), (1, 2, 5), (1, 2, 7), (1, 5, 7)]
    assert bool((i < j).all())


def test_sequence_pairs_diagonal_flag():
    seq = torch.tensor([[0, 2, 2, 9]])
    b, i, j = sequence_pairs(seq, include_diagonal=True)
    assert sorted(zip(i.tolist(), j.tolist())) == [(2, 2), (2, 9), (9, 9)]


def test_skd_paper_hand_computed():
    r = torch.tensor([0.0, 1.5])
    r_hat = torch.tensor([1.5, 1.5], requires_grad=True)
    sig = lambda x: 1 / (1 + math.exp(-x))  # noqa: E731
    want = ((sig(0.0) - sig(1.0)) ** 2 + 0.0) / 2
    got = skd_loss(r_hat, r, tau=1.5, form="paper")
    assert got.item() == pytest.approx(want, rel=1e-6)
    got.backward()
    assert r_hat.grad[1].item() == 0.0 and r_hat.grad[0].item() != 0.0


def test_skd_reference_frobenius_per_row():
    r = torch.tensor([0.0, 0.0, 0.0])
    r_hat = torch.tensor([3.0, 4.0, 1.5])
    rows = torch.tensor([0, 0, 2])
    # row 0: sqrt((2)^2 + (8/3)^2), row 2: sqrt(1), row 1 has no pair; divided by B = 3
    want = (math.sqrt(4 + (4 / 1.5) ** 2 + 2e-8) + math.sqrt(1 + 1e-8)) / 3
    got = skd_loss(r_hat, r, tau=1.5, form="reference", rows=rows, n_rows=3)
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_skd_empty_pairs_is_zero_with_graph():
    r_hat = torch.zeros(0, requires_grad=True)
    loss = skd_loss(r_hat, torch.zeros(0))
    loss.backward()
    assert loss.item() == 0.0


def test_ckd_hand_computed():
    logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    codes = torch.tensor([1, 0])
    want = (-math.log(3 / 4) - math.log(0.5)) / 2
    assert ckd_loss(logits, codes).item() == pytest.approx(want, rel=1e-6)


def test_kd_weights_intended_and_reference_bug():
    w = kd_weights(4.0, 0.5)
    assert w[("skd", "image")] == 4.0 and w[("skd", "text")] == 4.0
    assert w[("ckd", "image")] == 0.5 and w[("ckd", "text")] == 0.5
    bug = kd_weights(4.0, 0.5, reference_weight_bug=True)
    assert bug[("skd", "image")] == 4.0 and bug[("ckd", "image")] == 4.0
    assert bug[("skd", "text")] == 0.5 and bug[("ckd", "text")] == 0.5


def test_async_lr_schedule():
    assert async_lr_scale("off", 1) == 1.0
    assert [async_lr_scale("constant", e) for e in (1, 7, 30)] == [0.25] * 3
    assert [async_lr_scale("milestone", e) for e in (1, 4, 5, 9, 10, 20)] == [0.25, 0.25, 0.5, 0.5, 1.0, 1.0]
    with pytest.raises(ValueError, match="milestone"):
        async_lr_scale("sometimes", 1)  # type: ignore[arg-type]


def test_ckd_ignores_pairs_without_feature():
    logits = torch.tensor([[0.0, 0.0], [5.0, -5.0]], requires_grad=True)
    assert ckd_loss(logits, torch.tensor([1, -100])).item() == pytest.approx(math.log(2), rel=1e-6)
    none = ckd_loss(logits, torch.tensor([-100, -100]))
    none.backward()
    assert none.item() == 0.0


def test_pair_correlation_is_the_teachers():
    from mmrec.objectives.correlation_kd import IGNORE_CODE, pair_correlation
    from mmrec.teacher import IGNORE_CODE as TEACHER_IGNORE
    from mmrec.teacher.targets import correlation

    a, b = torch.randn(4, 8), torch.randn(4, 8)
    for kind in ("cosine", "dot", "euclidean"):
        assert torch.equal(pair_correlation(a, b, kind), correlation(a, b, kind))
    assert IGNORE_CODE == TEACHER_IGNORE
