"""Issue 23's levers: the inductive path for cold items (a learned [MASK] ID, item-ID dropout),
cosine-softmax scoring, whitened text features and the pooled text vector as an IMT token."""

from __future__ import annotations

import copy

import models_fit as mf
import pytest
import torch

from mmrec.models.base import SeqBatch
from mmrec.models.registry import build_model

CONTENT_MODELS = ["sasrec_ef", "sasrec_lf", "kdsr", "odmt", "odmt_kdsr"]
N, L, COLD = 20, 6, 7
SMALL = {"hidden": 16, "layers": 1, "heads": 2, "max_len": L, "dropout": 0.0}


def _ctx(arch: str):
    ctx = mf.full_context(arch, N, L)
    ctx.item_pop = torch.ones(N + 1, dtype=torch.long)
    ctx.item_pop[0] = 0
    ctx.item_pop[COLD] = 0                                             # never seen in training
    return ctx


def _build(arch: str, ctx, **over):
    torch.manual_seed(0)
    extra = {"imt_layers": 1, "imt_dropout": 0.0} if arch.startswith("odmt") else {}
    return build_model(arch, ctx, {**SMALL, **extra, **over}).eval()


def _id_table(model) -> torch.nn.Embedding:
    return model.id_emb if hasattr(model, "id_emb") else model.item_emb


def _other_content(arch: str, ctx):
    """A copy of ctx where only item COLD's content differs."""
    other = copy.deepcopy(ctx)
    g = torch.Generator().manual_seed(9)
    if arch.startswith("kdsr"):
        for t in other.teachers.values():
            t.denoised[COLD] = torch.rand(t.denoised.shape[1], generator=g)
    else:
        for f in other.features.values():
            f.vector[COLD] = torch.randn(f.vector.shape[1], generator=g)
            f.tokens[COLD] = torch.randn(f.tokens.shape[1:], generator=g).half() * f.token_mask[COLD, :, None]
    return other


def _scores(model, item: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(item vector of `item`, user vector of a history ending in it)."""
    hist = torch.tensor([[0, 0, 3, 5, 9, item]])
    with torch.no_grad():
        return model.item_repr()[item].clone(), model.user_repr(hist)[0].clone()


@pytest.mark.parametrize("arch", CONTENT_MODELS)
def test_cold_item_scores_from_content_not_from_its_id_row(arch):
    ctx = _ctx(arch)
    for cold_id, id_matters in (("table", True), ("mask", False)):
        model = _build(arch, ctx, cold_id=cold_id)
        item, user = _scores(model, COLD)
        with torch.no_grad():
            # its untrained ID row (a random change: LayerNorms ignore a constant shift)
            _id_table(model).weight[COLD] += torch.randn(16)
        item2, user2 = _scores(model, COLD)
        changed = not (torch.allclose(item, item2) and torch.allclose(user, user2))
        assert changed == id_matters, cold_id
    masked = _build(arch, ctx, cold_id="mask")
    content = _build(arch, _other_content(arch, ctx), cold_id="mask")
    assert not torch.allclose(_scores(masked, COLD)[0], _scores(content, COLD)[0])
    warm = _scores(masked, 3)[0]                                       # a warm item keeps its row
    with torch.no_grad():
        _id_table(masked).weight[3] += torch.randn(16)
    assert not torch.allclose(warm, _scores(masked, 3)[0])


def test_id_dropout_masks_a_share_of_items_in_training_only():
    model = _build("sasrec_ef", _ctx("sasrec_ef"), id_dropout=0.3)
    ids = torch.arange(1, N + 1).repeat(50, 1)                         # [50, N]
    model.train()
    share = torch.stack([model.inductive.masked(ids[0]) for _ in range(200)]).float().mean()
    assert 0.25 < float(share) < 0.35
    model.eval()
    assert not model.inductive.masked(ids).any()
    off = _build("sasrec_ef", _ctx("sasrec_ef"))
    assert off.inductive is None                                       # default: no new parameter


@pytest.mark.parametrize("arch", ["sasrec", "gru4rec", *CONTENT_MODELS])
def test_cosine_scores_are_normalised_per_branch(arch):
    ctx = _ctx(arch)
    model = _build(arch, ctx, loss_norm="cosine", temperature=0.07)
    n = len(getattr(model, "branches", [None]))
    with torch.no_grad():
        items = model.item_repr()[1:].view(N, n, -1)
        user = model.user_repr(torch.tensor([[0, 0, 3, 5, 9, 2]])).view(n, -1)
    assert torch.allclose(items.norm(dim=-1), torch.ones(N, n), atol=1e-5)
    assert torch.allclose(user.norm(dim=-1), torch.full((n,), 1.0 / n), atol=1e-5)
    model.train()
    seq = torch.from_numpy(mf.ts.sequences(8, N, L + 1))
    loss, _ = model.loss(SeqBatch(seq), 1)
    assert torch.isfinite(loss)
    loss.backward()


def test_cosine_loss_is_the_tempered_cosine_softmax():
    import torch.nn.functional as F

    model = _build("sasrec", _ctx("sasrec"), loss_norm="cosine", temperature=0.1)
    seq = torch.from_numpy(mf.ts.sequences(8, N, L + 1))
    b = SeqBatch(seq)
    rows = b.target_mask.nonzero(as_tuple=True)
    loss, _ = model.loss(b, 1)
    u = F.normalize(model.encode(b.inputs)[rows], dim=-1)
    v = F.normalize(model.item_emb.weight[1:], dim=-1)
    want = F.cross_entropy(u @ v.T / 0.1, b.targets[rows] - 1)
    assert loss.item() == pytest.approx(want.item(), rel=1e-5)


def test_whitened_features_have_identity_covariance():
    from mmrec.models.tokens import whiten_features

    f = mf.ts.features(200, 8, seed=4, missing=(5,))
    f.vector[f.has_feature] = f.vector[f.has_feature] @ torch.randn(8, 8) + 3.0   # correlated, offset
    w = whiten_features(f)
    x = w.vector[w.has_feature].double()
    assert torch.allclose(x.mean(0), torch.zeros(8, dtype=torch.double), atol=1e-4)
    assert torch.allclose(torch.cov(x.T), torch.eye(8, dtype=torch.double), atol=1e-3)
    assert w.vector[5].abs().sum() == 0 and w.vector[0].abs().sum() == 0
    assert not torch.equal(f.vector, w.vector)                         # the input is not changed in place


@pytest.mark.parametrize("arch", ["sasrec_ef", "odmt"])
def test_whiten_switch_changes_what_the_model_reads(arch):
    ctx = _ctx(arch)
    plain, white = _build(arch, ctx), _build(arch, ctx, whiten=["text"])
    assert not torch.allclose(plain.item_repr(), white.item_repr())
    assert torch.equal(ctx.features["text"].vector, mf.full_context(arch, N, L).features["text"].vector)
    with pytest.raises(ValueError, match="whiten"):
        _build(arch, ctx, whiten=["audio"])


def test_imt_text_vector_is_one_more_text_token():
    ctx = _ctx("odmt")
    on = _build("odmt", ctx, imt_text_vector=True)
    other = _other_content("odmt", ctx)
    other.features["text"].tokens = ctx.features["text"].tokens        # only the pooled vector differs
    other.features["image"] = ctx.features["image"]
    with torch.no_grad():
        a = on.item_vectors(torch.tensor([COLD]))["text"]
        b = _build("odmt", other, imt_text_vector=True).item_vectors(torch.tensor([COLD]))["text"]
        off_a = _build("odmt", ctx).item_vectors(torch.tensor([COLD]))["text"]
        off_b = _build("odmt", other).item_vectors(torch.tensor([COLD]))["text"]
    assert not torch.allclose(a, b)
    assert torch.allclose(off_a, off_b)                                # off: the vector is not read
    with pytest.raises(ValueError, match="imt_text_vector"):
        _build("odmt", ctx, imt_text_vector=True, imt="pooled")


@pytest.mark.parametrize("arch, over", [(a, {}) for a in CONTENT_MODELS] + [("odmt", {"loss": "full_ce"}),
                                                                          ("kdsr", {"loss": "inbatch"})])
def test_one_id_dropout_draw_per_step(arch, over, monkeypatch):
    """Inputs, candidates (and KDSR's supervised vectors) see the same masked items in a step."""
    from mmrec.models.layers import InductiveId

    model = _build(arch, _ctx(arch), id_dropout=0.3, **over).train()
    draws = []
    real = InductiveId.masked
    monkeypatch.setattr(InductiveId, "masked", lambda self, ids: draws.append(1) or real(self, ids))
    loss, _ = model.loss(SeqBatch(torch.from_numpy(mf.ts.sequences(8, N, L + 1))), 1)
    assert torch.isfinite(loss) and len(draws) == 1
