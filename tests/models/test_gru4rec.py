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


def test_left_padding_cannot_change_the_gru_state():
    """The same history left-padded by 0, 2 or 7 positions gives the same outputs at its items,
    equal to a plain GRU run over the items alone (padding never enters the recurrence)."""
    from mmrec.models.gru4rec import GRUEncoder

    torch.manual_seed(0)
    enc = GRUEncoder(8, 2, 0.3).eval()
    items = torch.randn(1, 4, 8)
    outs = []
    for pad in (0, 2, 7):
        x = torch.cat([torch.randn(1, pad, 8), items], 1)             # padding content is ignored
        valid = torch.arange(pad + 4)[None, :] >= pad
        outs.append(enc(x, valid)[:, pad:])
    plain = enc.out(enc.gru(items)[0])
    for out in outs:
        assert torch.allclose(out, plain, atol=1e-6)
    # a batch mixing lengths (one row fully padded) agrees row by row with the rows alone
    x = torch.randn(3, 5, 8)
    valid = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0]], dtype=torch.bool)
    batch = enc(x, valid)
    for b in range(2):
        n = int(valid[b].sum())
        alone = enc.out(enc.gru(x[b:b + 1, 5 - n:])[0])
        assert torch.allclose(batch[b:b + 1, 5 - n:], alone, atol=1e-6)
    assert torch.isfinite(batch).all()


def test_gru4rec_user_repr_ignores_the_window_size():
    ctx = mf.ts.context(10, modalities=())
    torch.manual_seed(0)
    short = build_model("gru4rec", ctx, {"hidden": 8, "max_len": 4}).eval()
    long = build_model("gru4rec", ctx, {"hidden": 8, "max_len": 12}).eval()
    long.load_state_dict(short.state_dict())
    hist = torch.tensor([[3, 1, 2], [0, 5, 6]])
    assert torch.allclose(short.user_repr(hist), long.user_repr(hist), atol=1e-6)
