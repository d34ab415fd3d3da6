"""ODMT and ODMT+KDSR: mask, unique-item IMT, modality subsets, ablations, overfitting."""

from __future__ import annotations

import torch

from mmrec.features.types import ModalityFeatures
from mmrec.models.base import ModelContext, SeqBatch


def features(n_items: int, n_tok: int, d_tok: int, seed: int, pad_tail: bool) -> ModalityFeatures:
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randn(n_items + 1, n_tok, d_tok, generator=g)
    mask = torch.ones(n_items + 1, n_tok, dtype=torch.bool)
    if pad_tail:  # text: items have 2..n_tok real tokens
        lens = torch.randint(2, n_tok + 1, (n_items + 1,), generator=g)
        mask = torch.arange(n_tok)[None, :] < lens[:, None]
        tokens = tokens * mask[..., None]
    has = torch.ones(n_items + 1, dtype=torch.bool)
    has[0] = False
    tokens[0] = 0
    mask[0] = False
    # the pooled vector: the mean of the real tokens (not token 0, the CLS/summary state)
    vector = (tokens * mask[..., None]).sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
    return ModalityFeatures(vector=vector, has_feature=has, tokens=tokens.half(), token_mask=mask,
                            encoder="fake")


def context(n_items: int = 30, modalities=("text", "image"), teachers: bool = False,
            max_len: int = 6) -> ModelContext:
    feats = {}
    if "text" in modalities:
        feats["text"] = features(n_items, 6, 12, 1, pad_tail=True)
    if "image" in modalities:
        feats["image"] = features(n_items, 1 + 9, 10, 2, pad_tail=False)
    pop = torch.arange(n_items + 1) % 5 + 1
    pop[0] = 0
    ctx = ModelContext(n_items=n_items, max_len=max_len, item_pop=pop, features=feats)
    if teachers:
        from mmrec.teacher import PairTeacher

        g = torch.Generator().manual_seed(3)
        for m in feats:
            ctx.teachers[m] = PairTeacher(torch.randn(n_items + 1, 16, generator=g),
                                          torch.randn(5, 4, generator=g), "cosine", 4)
    return ctx


def batch(n_items: int = 30, n_users: int = 8, max_len: int = 6, seed: int = 0) -> SeqBatch:
    """Left-padded windows of S+1 = max_len+1 slots with repeats across users."""
    g = torch.Generator().manual_seed(seed)
    seq = torch.randint(1, n_items + 1, (n_users, max_len + 1), generator=g)
    lens = torch.randint(3, max_len + 2, (n_users,), generator=g)
    pad = torch.arange(max_len + 1)[None, :] < (max_len + 1 - lens)[:, None]
    return SeqBatch(seq.masked_fill(pad, 0))


# ---------------------------------------------------------------------------------------- tests
import pytest  # noqa: E402

from mmrec.models.odmt import ODMT, ODMTKDSR, imt_attention_mask  # noqa: E402
from mmrec.models.registry import build_model  # noqa: E402
from mmrec.objectives.distill import online_distillation  # noqa: E402

SMALL = {"hidden": 16, "layers": 1, "heads": 2, "imt_layers": 1, "imt_heads": 2, "max_len": 6,
         "dropout": 0.0, "imt_dropout": 0.0}


def make(arch: str = "odmt", ctx: ModelContext | None = None, **over) -> ODMT:
    torch.manual_seed(0)
    cfg = {**SMALL, **over}
    return build_model(arch, ctx or context(), cfg)


def test_mask_who_sees_whom():
    text = torch.tensor([[True, True, False]])     # third text token is padding
    image = torch.tensor([[True, True]])
    m = imt_attention_mask(text, image, has_id=True, id_mask=True)[0, 0]   # [6, 6]
    ID = 5
    # text and image queries never see the ID key
    assert not m[:5, ID].any()
    # the ID query sees every valid token (and itself), not the padded text key
    assert m[ID].tolist() == [True, True, False, True, True, True]
    # padded text key hidden from every other query
    assert not m[[0, 1, 3, 4, 5], 2].any()
    # text and image see each other
    assert m[0, 3] and m[3, 0]
    # without the ID mask, everyone sees the ID token
    m2 = imt_attention_mask(text, image, has_id=True, id_mask=False)[0, 0]
    assert m2[:, ID].all()
    # without an ID token there is no ID column
    assert imt_attention_mask(text, image, has_id=False, id_mask=True).shape[-1] == 5


def test_mask_is_applied_in_the_imt():
    """Changing the ID embedding must not change the text/image outputs under the ID mask."""
    model = make().eval()
    ids = torch.tensor([1, 2, 3])
    with torch.no_grad():
        a = model.item_vectors(ids)
        model.id_emb.weight.normal_(0.0, 5.0)
        b = model.item_vectors(ids)
    assert _rel(a["text"], b["text"]) < 1e-5
    assert _rel(a["image"], b["image"]) < 1e-5
    assert _rel(a["id"], b["id"]) > 1e-2
    off = make(id_mask=False).eval()
    with torch.no_grad():
        a = off.item_vectors(ids)
        off.id_emb.weight.normal_(0.0, 5.0)
        b = off.item_vectors(ids)
    assert _rel(a["text"], b["text"]) > 1e-3   # vs < 1e-5 with the mask


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / a.abs().max())


def test_padded_text_tokens_do_not_matter():
    ctx = context()
    model = make(ctx=ctx).eval()
    store = model._stores["text"]
    ids = torch.tensor([4, 5])
    with torch.no_grad():
        a = model.item_vectors(ids)
        pad = ~store.mask
        store.tokens[pad] = torch.randn(int(pad.sum()), store.tokens.shape[-1]).half()
        b = model.item_vectors(ids)
    for k in a:
        assert _rel(a[k], b[k]) < 1e-4


def test_unique_item_imt_equals_per_slot():
    model = make().eval()
    seq = batch().seq
    with torch.no_grad():
        slots, uniq, _ = model.slot_vectors(seq)
        per_slot = model.item_vectors(seq.reshape(-1))
    assert uniq.numel() < seq.numel()
    for b in model.branches:
        assert _rel(slots[b].reshape(-1, slots[b].shape[-1]), per_slot[b]) < 1e-5


def test_scores_average_the_branches():
    model = make().eval()
    hist = batch().seq[:, :-1]
    with torch.no_grad():
        fused = model.score(hist)
        per = model.branch_scores(hist)
    assert fused.shape == (hist.shape[0], 31)
    assert _rel(fused, sum(per.values()) / len(per)) < 1e-4


def test_id_init_projects_the_pooled_vector_with_the_modality_projection():
    ctx = context()
    text = make(ctx=ctx, id_init="text")
    with torch.no_grad():
        expect = text.proj["text"](ctx.features["text"].vector.float())
        cls = text.proj["text"](text._stores["text"].tokens[:, 0].float())
    assert torch.allclose(text.id_emb.weight[1:], expect[1:], atol=1e-5)
    assert not torch.allclose(text.id_emb.weight[1:], cls[1:], atol=1e-3)   # not the CLS state
    assert text.id_emb.weight[0].abs().sum() == 0
    mean = make(ctx=ctx, id_init="mean")
    with torch.no_grad():
        e_t = mean.proj["text"](ctx.features["text"].vector.float())
        e_v = mean.proj["image"](ctx.features["image"].vector.float())
    assert torch.allclose(mean.id_emb.weight[1:], ((e_t + e_v) / 2)[1:], atol=1e-5)
    with pytest.raises(ValueError, match="id_init"):
        make(ctx=context(modalities=("text",)), id_init="image")


def test_id_init_falls_back_to_the_summary_token_outside_the_token_space():
    """A pooled vector of another size than the tokens (EfficientNet: 1280-d pool, grid tokens
    of the map's size) cannot go through P_m: token 0 stands in."""
    ctx = context(modalities=("image",))
    f = ctx.features["image"]
    f.vector = torch.cat([f.vector, f.vector], dim=1)                  # 20-d vs 10-d tokens
    model = make(ctx=ctx, id_init="image")
    with torch.no_grad():
        expect = model.proj["image"](model._stores["image"].tokens[:, 0].float())
    assert torch.allclose(model.id_emb.weight[1:], expect[1:], atol=1e-5)
    fst = make(ctx=ctx, id_init="image", imt=False)                    # P_m of the own transformer
    with torch.no_grad():
        expect = fst.fst["image"].proj(fst._stores["image"].tokens[:, 0].float())
    assert torch.allclose(fst.id_emb.weight[1:], expect[1:], atol=1e-5)


def _one_step(model: ODMT, epoch: int = 30) -> dict[str, float]:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    loss, logs = model.loss(batch(), epoch)
    assert torch.isfinite(loss)
    opt.zero_grad()
    loss.backward()
    opt.step()
    assert all(math.isfinite(v) for v in logs.values())
    return logs


import math  # noqa: E402


@pytest.mark.parametrize("mods", [("text",), ("image",), ("text", "image")])
def test_modality_subsets_train(mods):
    model = make(ctx=context(modalities=mods))
    assert model.branches == ["id", *mods]
    logs = _one_step(model)
    assert {f"loss_rec_{m}" for m in model.branches} <= set(logs)
    assert "kd_id_ensemble" in logs
    assert model.item_repr().shape == (31, 16 * len(model.branches))


@pytest.mark.parametrize("over", [
    {"id_init": "text"}, {"id_init": "image"}, {"id_init": "none"}, {"id_init": "mean"},
    {"id_mask": False}, {"imt": False}, {"imt": "pooled"}, {"distill": False},
    {"distill": "branch_only"}, {"use_id": False}, {"use_id": False, "imt": "pooled"},
    {"loss": "full_ce"}, {"kd_loss": "ce", "detach_teacher": False}, {"image_grid": 2},
    {"use_id": False, "imt": False},
])
def test_ablation_switches_build_and_train(over):
    model = make(**over)
    logs = _one_step(model)
    if over.get("use_id") is False:
        assert "id" not in model.branches and "loss_rec_id" not in logs
        assert "kd_text_ensemble" in logs
    if over.get("distill") in (False, "branch_only"):
        assert not any(k.startswith("kd_") and k != "kd_w" for k in logs)
        assert logs["kd_w"] == 0.0
    if over.get("distill") is False:                                   # one late-fusion loss
        assert "loss_rec" in logs and not any(k.startswith("loss_rec_") for k in logs)
    if over.get("distill") == "branch_only":
        assert {f"loss_rec_{b}" for b in model.branches} <= set(logs)


def test_image_grid_pooling_shrinks_tokens():
    model = make(image_grid=2)
    assert model._stores["image"].tokens.shape[1] == 1 + 4
    assert make()._stores["image"].tokens.shape[1] == 1 + 9


def test_kd_weight_follows_rampup():
    model = make(rampup_epochs=20)
    assert round(model.loss(batch(), 1)[1]["kd_w"], 3) == 0.011
    assert round(model.loss(batch(), 10)[1]["kd_w"], 3) == 0.287


def test_missing_tokens_or_modalities_fail_before_training():
    ctx = context()
    ctx.features["text"].tokens = None
    with pytest.raises(ValueError, match="token"):
        make(ctx=ctx)
    assert make(ctx=ctx, imt="pooled").branches == ["id", "text", "image"]
    assert not ODMT.wants_tokens({"imt": "pooled"})                   # the stage loads none then
    assert ODMT.wants_tokens({}) and ODMT.wants_tokens({"imt": False})
    with pytest.raises(ValueError, match="token"):       # w/o IMT reads the same tokens
        make(ctx=ctx, imt=False)
    with pytest.raises(ValueError, match="image"):
        make(ctx=context(modalities=("text",)), modalities=["image"])
    with pytest.raises(ValueError, match="unknown key"):
        make(bogus=1)
    with pytest.raises(ValueError, match="needs at least 1 modality"):
        make(ctx=context(modalities=()))


def test_odmt_kdsr_adds_correlation_terms():
    model = make("odmt_kdsr", ctx=context(teachers=True))
    assert isinstance(model, ODMTKDSR)
    logs = _one_step(model)
    for m in ("text", "image"):
        assert f"loss_skd_{m}" in logs and f"loss_ckd_{m}" in logs
        assert logs[f"loss_skd_{m}"] > 0 and logs[f"loss_ckd_{m}"] > 0
    assert "kd_id_ensemble" in logs
    with pytest.raises(ValueError, match="teacher"):
        make("odmt_kdsr", ctx=context(teachers=False))


def _train_recall(model: ODMT, seq: torch.Tensor) -> float:
    model.eval()
    with torch.no_grad():
        scores = model.score(seq[:, :-1])
    scores[:, 0] = -float("inf")
    target = seq[:, -1]
    rank = (scores > scores.gather(1, target[:, None])).sum(1)
    return float((rank < 10).float().mean())


@pytest.mark.slow
def test_overfits_tiny_fixture():
    """The default ODMT (debiased in-batch softmax + KD) memorises 8 users' next items."""
    n_items = 60
    ctx = context(n_items=n_items)
    torch.manual_seed(0)
    seq = torch.stack([torch.randperm(n_items)[:6] + 1 for _ in range(8)])   # [8, 6]
    b = SeqBatch(seq)
    model = make(ctx=ctx, max_len=5, rampup_epochs=3)
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for step in range(60):
        model.train()
        loss, _ = model.loss(b, epoch=1 + step // 10)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    assert sum(losses[-5:]) / 5 < 0.7 * losses[0]
    assert _train_recall(model, seq) >= 0.875


def test_single_branch_has_no_distillation():
    model = make(ctx=context(modalities=("image",)), use_id=False)
    assert model.branches == ["image"]
    logs = _one_step(model)
    assert set(logs) == {"loss_rec_image", "kd_w"}


def test_last_layer_on_output_rows_equals_full_block():
    from mmrec.models.layers import Block
    from mmrec.models.odmt import _block_rows

    torch.manual_seed(0)
    block = Block(16, 2, 0.0).eval()
    for p in block.parameters():
        torch.nn.init.normal_(p, 0.0, 0.3)
    x = torch.randn(5, 7, 16)
    mask = imt_attention_mask(torch.rand(5, 4) > 0.3, torch.ones(5, 2, dtype=torch.bool), True, True)
    rows = torch.tensor([0, 4, 6])
    with torch.no_grad():
        assert _rel(block(x, mask)[:, rows], _block_rows(block, x, mask, rows)) < 1e-5


def test_input_norm_makes_branches_blind_to_feature_scale():
    """Frozen encoders differ in scale by orders of magnitude; with input_norm (the default)
    the modality branches see the same thing whatever the scale."""
    ids = torch.tensor([1, 2, 3])
    out = {}
    for norm in (True, False):
        for scale in (1.0, 100.0):
            ctx = context()
            for f in ctx.features.values():
                f.tokens = (f.tokens.float() * scale).half()
                f.vector = f.vector * scale
            torch.manual_seed(0)
            with torch.no_grad():
                out[norm, scale] = make(ctx=ctx, id_init="none", input_norm=norm).eval().item_vectors(ids)
    for m in ("text", "image"):
        assert _rel(out[True, 1.0][m], out[True, 100.0][m]) < 1e-3
        assert _rel(out[False, 1.0][m], out[False, 100.0][m]) > 3e-2


def test_evaluation_reuses_item_tables_exactly_and_notices_weight_changes():
    model = make().eval()
    hist = batch().seq[:, 1:]
    with torch.no_grad():
        fresh = model.user_repr(hist)                                  # no tables cached yet
    with torch.inference_mode():
        model.item_repr()
        cached = model.user_repr(hist)
    assert "_eval_tables" in model.__dict__
    assert torch.allclose(fresh, cached, atol=1e-5)
    with torch.no_grad():
        model.id_emb.weight.mul_(3.0)                                  # in place: version bumps
        changed = model.user_repr(hist)                                # must not use stale tables
        model.__dict__.pop("_eval_tables")
        recomputed = model.user_repr(hist)
    assert torch.allclose(changed, recomputed, atol=1e-6)
    assert not torch.allclose(changed, cached, atol=1e-3)
    model.train()
    assert "_eval_tables" not in model.__dict__


def test_errors_name_the_registered_model():
    for arch in ("odmt", "odmt_kdsr"):
        ctx = context(teachers=True)
        ctx.features["text"].tokens = None
        with pytest.raises(ValueError, match=rf"model '{arch}' needs the token states of modality 'text'"):
            make(arch, ctx=ctx)


@pytest.mark.parametrize("loss", ["inbatch", "full_ce"])
def test_without_distillation_the_loss_is_the_late_fusion_loss(loss):
    """`distill: false` (the paper's "w/o online distillation"): the CE of the mean branch
    logits, i.e. late fusion's loss (mmrec.models.fusion.SASRecLF: concatenated branch vectors,
    user side / branches, through the shared rec_loss), and nothing else."""
    from mmrec.objectives.losses import rec_loss, training_rows

    model = make(distill=False, loss=loss)
    b = batch()
    total, logs = model.loss(b, 30)
    slots, uniq, per_item = model.slot_vectors(b.seq)
    rows = training_rows(b)
    n = len(model.branches)
    user = torch.cat([model.encoders[m](slots[m][:, :-1], b.inputs > 0)[rows] for m in model.branches], 1) / n
    table = model.item_repr() if loss == "full_ce" else torch.zeros(31, 16 * n).index_copy(
        0, uniq, torch.cat([per_item[m] for m in model.branches], 1))
    want = rec_loss(loss, user, table, b, rows, model.log_pop if loss == "inbatch" else None)
    assert total.item() == pytest.approx(want.item(), rel=1e-5, abs=1e-6)
    assert set(logs) == {"loss_rec", "kd_w"}


def _branch_kl(model: ODMT, b: SeqBatch) -> float:
    with torch.no_grad():
        logits, _, offsets, _, _ = model.branch_logits(b)
        return sum(online_distillation(logits, 0.5, "kl", True, offsets).values()).item()


def _steps(model: ODMT, b: SeqBatch, n: int) -> None:
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(n):
        loss, _ = model.loss(b, 1)
        opt.zero_grad()
        loss.backward()
        opt.step()


def test_distillation_pulls_the_branches_together():
    """Branches trained apart disagree (their KL grows from ~0 at init); from there, a few steps
    with online distillation shrink the KL between them, and leave it below the same steps
    without distillation."""
    import copy

    b = batch(n_users=16)
    apart = make(distill="branch_only", rampup_epochs=0, kd_weight=1.0)
    _steps(apart, b, 8)
    start = _branch_kl(apart, b)
    together = copy.deepcopy(apart)
    together.cfg = apart.cfg.model_copy(update={"distill": True})
    _steps(together, b, 8)
    _steps(apart, b, 8)
    assert _branch_kl(together, b) < 0.8 * start
    assert _branch_kl(together, b) < _branch_kl(apart, b)


def test_gradient_share_of_distillation_is_logged():
    model = make(rampup_epochs=0)
    diag = model.diagnostics(batch(), 1)
    assert diag["gnorm_kd_rel"] > 0
    assert make(distill=False).diagnostics(batch(), 1) == {}
    kdsr = make("odmt_kdsr", ctx=context(teachers=True), rampup_epochs=0)
    assert {"gnorm_kd_rel", "gnorm_skd_rel", "gnorm_ckd_rel"} <= set(kdsr.diagnostics(batch(), 1))
