"""mmrec.models.layers: the CPU dropout, attention with dropout, and the trimmed window."""

import pytest
import torch
import torch.nn.functional as F

import models_fit as mf
from mmrec.data.sequences import SeqBatch, trim_padding
from mmrec.models.layers import attend, dropout, fit_window
from mmrec.models.registry import build_model


def test_dropout_keeps_one_minus_p_and_rescales():
    torch.manual_seed(0)
    x = torch.ones(200_000, requires_grad=True)
    y = dropout(x, 0.3, True)
    kept = y != 0
    assert abs(float(kept.float().mean()) - 0.7) < 0.005
    assert torch.allclose(y[kept], torch.full_like(y[kept], 1 / 0.7))
    y.sum().backward()                                                   # the gradient is the mask
    assert torch.equal(x.grad != 0, kept)
    assert dropout(x, 0.3, False) is x and dropout(x, 0.0, True) is x


def test_attention_with_dropout_matches_sdpa_in_expectation_and_without_dropout_exactly():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(3, 2, 5, 4, generator=g) for _ in range(3))
    mask = torch.rand(3, 1, 5, 5, generator=g) > 0.3
    mask |= torch.eye(5, dtype=torch.bool)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    assert torch.allclose(attend(q, k, v, mask, 0.2, False), ref, atol=1e-6)
    torch.manual_seed(0)
    mean = torch.stack([attend(q, k, v, mask, 0.2, True) for _ in range(4000)]).mean(0)
    assert torch.allclose(mean, ref, atol=0.05)


def test_fit_window_crops_to_max_len_and_drops_shared_padding():
    h = torch.tensor([[0, 0, 0, 0, 3, 4], [0, 0, 0, 5, 6, 7]])
    assert fit_window(h, 4).tolist() == [[0, 3, 4], [5, 6, 7]]
    assert fit_window(torch.tensor([[1, 2, 3, 4, 5]]), 3).tolist() == [[3, 4, 5]]
    assert fit_window(torch.zeros(2, 4, dtype=torch.long), 3).shape == (2, 1)
    assert fit_window(torch.zeros(2, 0, dtype=torch.long), 3).shape == (2, 1)


@pytest.mark.parametrize("arch", ["sasrec", "gru4rec", "sasrec_lf", "kdsr", "odmt"])
def test_trimmed_batches_give_the_same_loss_and_user_vectors(arch):
    """Training on trim_padding's batch and scoring fit_window's window is the same function as
    the full padded width (dropout off, so the only difference would be the padding)."""
    ctx = mf.ts.context(30, max_len=8, modalities=("text",), teachers=arch == "kdsr")
    if arch == "odmt":
        mf.add_tokens(ctx)
    torch.manual_seed(0)
    model = build_model(arch, ctx, {"hidden": 16, "layers": 1, "max_len": 8, "dropout": 0.0}).eval()
    seq = torch.tensor([[0, 0, 0, 0, 0, 3, 4, 5, 6], [0, 0, 0, 0, 7, 8, 9, 1, 2],
                        [0, 0, 0, 0, 0, 0, 11, 12, 13]])
    assert trim_padding(seq).shape[1] == 5
    with torch.no_grad():
        full, _ = model.loss(SeqBatch(seq), 1)
        trimmed, _ = model.loss(SeqBatch(trim_padding(seq)), 1)
        assert float(full) == pytest.approx(float(trimmed), rel=1e-5)
        hist = seq[:, :-1]
        wide = torch.cat([torch.zeros(3, 8, dtype=torch.long), hist], 1)   # [3, 16]: cropped to 8
        assert torch.allclose(model.user_repr(hist), model.user_repr(wide), atol=1e-5)
