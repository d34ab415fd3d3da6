import pytest
import torch

import models_fit as mf
from mmrec.models.registry import build_model, model_names


def test_sasrec_overfits_tiny_walks(tmp_path):
    model, log, metrics = mf.overfit("sasrec", tmp_path, modalities=(), epochs=25)
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
    assert metrics["recall@10"] >= 0.9


def test_user_repr_ignores_extra_left_padding_and_truncates_long_histories():
    ctx = mf.ts.context(30, max_len=6, modalities=())
    model = build_model("sasrec", ctx, {"hidden": 16, "layers": 1, "max_len": 6}).eval()
    h = torch.tensor([[0, 0, 3, 4, 5, 6]])
    padded = torch.cat([torch.zeros(1, 4, dtype=torch.long), h], dim=1)       # [1, 10]
    longer = torch.cat([torch.tensor([[9, 9, 9, 9]]), h], dim=1)              # older items beyond max_len
    with torch.no_grad():
        base = model.user_repr(h)
        assert torch.allclose(model.user_repr(padded), base, atol=1e-6)
        assert torch.allclose(model.user_repr(longer[:, -6:]), model.user_repr(longer), atol=1e-6)
        assert model.score(h).shape == (1, 31)


def test_unknown_model_lists_known_names():
    ctx = mf.ts.context(10, modalities=())
    with pytest.raises(KeyError, match="sasrec"):
        build_model("sasrek", ctx, {})
    assert {"sasrec", "gru4rec", "sasrec_ef", "sasrec_lf", "kdsr"} <= set(model_names())


def test_bad_config_key_names_the_section():
    ctx = mf.ts.context(10, modalities=())
    with pytest.raises(ValueError, match=r"train\.my_variant\.hiden: unknown key"):
        build_model("sasrec", ctx, {"hiden": 3}, section="my_variant")
