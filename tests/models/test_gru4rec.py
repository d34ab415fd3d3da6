import torch

import models_fit as mf
from mmrec.models.registry import build_model


def test_gru4rec_overfits_tiny_walks(tmp_path):
    model, log, metrics = mf.overfit("gru4rec", tmp_path, modalities=(), epochs=30)
    assert log[-1]["loss"] < 0.5 * log[0]["loss"]
    assert metrics["recall@10"] >= 0.9


def test_gru4rec_layers_setting():
    ctx = mf.ts.context(10, modalities=())
    model = build_model("gru4rec", ctx, {"hidden": 8, "layers": 2})
    assert model.encoder.gru.num_layers == 2
    assert model.user_repr(torch.tensor([[0, 1, 2]])).shape == (1, 8)
