import pytest
import torch

import models_fit as mf
from mmrec.models.registry import build_model


@pytest.mark.parametrize("arch", ["sasrec_ef", "sasrec_lf"])
def test_fusion_overfits_with_both_modalities(arch, tmp_path):
    model, log, metrics = mf.overfit(arch, tmp_path, epochs=20)
    assert model.mods == ["text", "image"]
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
    assert metrics["recall@10"] >= 0.9
    assert "retention_item_text" in log[-1] and "retention_image_image" in log[-1]


@pytest.mark.parametrize("arch", ["sasrec_ef", "sasrec_lf"])
@pytest.mark.parametrize("modality", ["text", "image"])
def test_fusion_single_modality_runs(arch, modality, tmp_path):
    model, log, metrics = mf.overfit(arch, tmp_path, modalities=(modality,), epochs=4)
    assert model.mods == [modality]
    assert torch.isfinite(torch.tensor(log[-1]["loss"]))
    assert f"retention_item_{modality}" in log[-1]
    other = "image" if modality == "text" else "text"
    assert f"retention_item_{other}" not in log[-1]


@pytest.mark.parametrize("arch", ["sasrec_ef", "sasrec_lf"])
def test_missing_modality_errors_name_model_and_modality(arch):
    ctx = mf.ts.context(10, modalities=("text",))
    with pytest.raises(ValueError, match=rf"{arch}.*image"):
        build_model(arch, ctx, {"modalities": ["image"]})
    with pytest.raises(ValueError, match=rf"{arch}.*at least 1 modality"):
        build_model(arch, mf.ts.context(10, modalities=()), {})


def test_late_fusion_score_is_mean_of_branch_scores():
    ctx = mf.ts.context(12, max_len=5)
    model = build_model("sasrec_lf", ctx, {"hidden": 8, "layers": 1, "max_len": 5}).eval()
    h = torch.tensor([[0, 3, 4, 5, 6], [0, 0, 0, 1, 2]])
    with torch.no_grad():
        tables = model.tables_for()
        per_branch = [model.encoders[b](tables[b][h], h > 0)[:, -1] @ tables[b].T for b in model.branches]
        want = torch.stack(per_branch).mean(0)
        assert torch.allclose(model.score(h), want, atol=1e-5)


def test_early_fusion_averages_only_the_sources_an_item_has():
    ctx = mf.ts.context(6, max_len=4)
    ctx.features["image"] = mf.ts.features(6, 20, seed=3, missing=(2,))
    model = build_model("sasrec_ef", ctx, {"hidden": 8, "layers": 1, "max_len": 4, "fst": "linear"}).eval()
    ids = torch.tensor([2])
    with torch.no_grad():
        want = (model.item_emb(ids) + model.tables.rows("text", ids)) / 2
        assert torch.allclose(model.fused(ids), want, atol=1e-6)
        assert torch.count_nonzero(model.fused(torch.tensor([0]))) == 0


def test_frozen_features_are_not_in_the_state_dict():
    ctx = mf.ts.context(10)
    model = build_model("sasrec_ef", ctx, {"hidden": 8})
    assert not any(k.startswith("tables.vec_") or k.startswith("tables.has_") for k in model.state_dict())


@pytest.mark.parametrize("arch", ["sasrec_ef", "sasrec_lf"])
def test_transformer_fst_over_tokens_overfits(arch, tmp_path):
    model, log, metrics = mf.overfit(arch, tmp_path, epochs=20, tokens=True, fst="transformer")
    assert model.tables.tokens and set(model.tables.fst) == {"text", "image"}
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
    assert metrics["recall@10"] >= 0.9


def test_transformer_fst_needs_tokens_and_ignores_padding():
    cls = type(build_model("sasrec_lf", mf.ts.context(10), {}))
    assert cls.wants_tokens({"fst": "transformer"}) and not cls.wants_tokens({"fst": "mlp"})
    with pytest.raises(ValueError, match=r"sasrec_lf.*token states of modality 'text'"):
        build_model("sasrec_lf", mf.ts.context(10), {"fst": "transformer"})
    ctx = mf.ts.context(10)
    mf.add_tokens(ctx)
    model = build_model("sasrec_lf", ctx, {"fst": "transformer", "hidden": 8, "fst_heads": 2}).eval()
    ids = torch.arange(1, 11)
    store = model.tables.fst["text"].store
    with torch.no_grad():
        a = model.tables.rows("text", ids)
        store.tokens[~store.mask] = 7.0                                  # garbage in padded slots
        b = model.tables.rows("text", ids)
        store.tokens[:, 0] += 1.0                                        # the summary token matters
        c = model.tables.rows("text", ids)
    assert torch.allclose(a, b, atol=1e-5)
    assert not torch.allclose(a, c, atol=1e-3)
