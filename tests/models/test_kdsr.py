import models_fit as mf
import pytest
import torch

from mmrec.models.base import SeqBatch
from mmrec.models.registry import build_model
from mmrec.objectives.correlation_kd import kd_weights
from mmrec.train.loop import make_optimizer, set_lrs


def _model(**cfg):
    ctx = mf.ts.context(20, max_len=6, teachers=True)
    base = {"hidden": 16, "layers": 1, "max_len": 6, "dropout": 0.0}
    return ctx, build_model("kdsr", ctx, {**base, **cfg})


def test_kdsr_overfits_and_logs_every_component(tmp_path):
    model, log, metrics = mf.overfit("kdsr", tmp_path, epochs=20)
    assert log[-1]["loss_rec"] < 0.5 * log[0]["loss_rec"]
    assert metrics["recall@10"] >= 0.9
    for key in ("loss_skd_text", "loss_skd_image", "loss_ckd_text", "loss_ckd_image",
                "retention_text_table_text", "retention_image_table_image"):
        assert key in log[-1]


def test_kdsr_gru_backbone_trains(tmp_path):
    model, log, _ = mf.overfit("kdsr", tmp_path, epochs=3, backbone="gru4rec")
    assert type(model.encoder).__name__ == "GRUEncoder"
    assert log[-1]["loss"] < log[0]["loss"]


def test_modality_tables_start_from_teacher_features():
    ctx, model = _model()
    for m in ("text", "image"):
        assert torch.equal(model.mod_emb[m].weight[1:], ctx.teachers[m].denoised[1:])
        assert model.mod_emb[m].weight.requires_grad
    _, rand = _model(table_init="random")
    for m in ("text", "image"):
        w = rand.mod_emb[m].weight.detach()
        assert not torch.allclose(w[1:], ctx.teachers[m].denoised[1:]) and float(w[1:].std()) < 0.05
        assert w[0].abs().sum() == 0


@pytest.mark.parametrize("bug", [False, True])
def test_total_loss_uses_the_weight_mapping(bug):
    _, model = _model(reference_weight_bug=bug, lambda_skd=3.0, lambda_ckd=0.25)
    batch = SeqBatch(torch.tensor([[0, 1, 2, 3, 4, 5, 6], [2, 9, 4, 7, 1, 3, 8]]))
    torch.manual_seed(0)
    total, comps = model.loss(batch, 1)
    w = kd_weights(3.0, 0.25, bug)
    want = comps["loss_rec"] + sum(w[(k, m)] * comps[f"loss_{k}_{m}"]
                                   for k in ("skd", "ckd") for m in ("text", "image"))
    assert total.item() == pytest.approx(want, rel=1e-5)


def test_switches_remove_components():
    _, model = _model(skd=False, ckd=False)
    _, comps = model.loss(SeqBatch(torch.tensor([[0, 1, 2, 3, 4, 5, 6]])), 1)
    assert set(comps) == {"loss_rec"}
    _, model = _model(ckd=False, modalities=["text"])
    _, comps = model.loss(SeqBatch(torch.tensor([[0, 1, 2, 3, 4, 5, 6]])), 1)
    assert set(comps) == {"loss_rec", "loss_skd_text"}


@pytest.mark.parametrize("mode,want", [("off", [1.0, 1.0, 1.0]), ("constant", [0.25, 0.25, 0.25]),
                                       ("milestone", [0.25, 0.5, 1.0])])
def test_async_lr_groups(mode, want):
    _, model = _model(async_lr=mode)
    opt = make_optimizer(model, lr=0.01, weight_decay=0.1)
    groups = {g["name"]: g for g in opt.param_groups}
    tables = {id(p) for p in model.mod_emb.parameters()}
    assert {id(p) for p in groups["modality_tables"]["params"]} == tables
    assert groups["modality_tables"]["weight_decay"] == 0.0
    got = []
    for epoch in (1, 5, 10):
        set_lrs(opt, model, epoch)
        got.append(groups["modality_tables"]["lr"] / 0.01)
        assert groups["decay"]["lr"] == 0.01
    assert got == want


def test_kdsr_without_teacher_fails_clearly():
    ctx = mf.ts.context(10, teachers=False)
    with pytest.raises(ValueError, match="kdsr.*at least 1 modality"):
        build_model("kdsr", ctx, {})


def test_async_lr_off_survives_yaml():
    """`async_lr: off` in params.yaml arrives as False (YAML 1.1); it must mean "off"."""
    import yaml

    from mmrec.models.kdsr import KDSRConfig

    raw = yaml.safe_load("async_lr: off")
    assert raw["async_lr"] is False
    assert KDSRConfig(**raw).async_lr == "off"
    with pytest.raises(ValueError, match="async_lr"):
        KDSRConfig(async_lr=True)


def test_kdsr_input_dropout_applies_once():
    """Training-mode encodings: the only randomness is one dropout of the fused item vectors."""
    from torch import nn

    ctx = mf.ts.context(12, max_len=5, teachers=True)
    torch.manual_seed(0)
    for backbone in ("sasrec", "gru4rec"):
        model = build_model("kdsr", ctx, {"hidden": 16, "layers": 1, "max_len": 5, "dropout": 0.5,
                                          "backbone": backbone})
        drops = [n for n, m in model.named_modules() if isinstance(m, nn.Dropout) and m.p > 0]
        # the input dropout of the encoder only (plus the transformer's block dropouts)
        assert not any(n == "drop" for n in drops), drops
        assert "encoder.drop" in drops


def test_kdsr_gru_backbone_layers_are_configurable():
    ctx = mf.ts.context(12, max_len=5, teachers=True)
    default = build_model("kdsr", ctx, {"hidden": 16, "layers": 2, "backbone": "gru4rec"})
    assert default.encoder.gru.num_layers == 1      # like the GRU4Rec baseline, not `layers`
    two = build_model("kdsr", ctx, {"hidden": 16, "backbone": "gru4rec", "gru_layers": 2})
    assert two.encoder.gru.num_layers == 2


def _teacher_ctx(n_items: int = 60, max_len: int = 8):
    """A walk context whose teachers have varied codes (randn features: every code occurs)."""
    from mmrec.teacher import PairTeacher

    ctx = mf.ts.context(n_items, max_len=max_len, teachers=False)
    g = torch.Generator().manual_seed(3)
    ctx.teachers = {m: PairTeacher(torch.randn(n_items + 1, 16, generator=g),
                                   0.5 * torch.randn(5, 4, generator=g), "cosine", 4) for m in ctx.features}
    return ctx


def _steps(model, seqs: torch.Tensor, n: int = 5, lr: float = 1e-2) -> None:
    opt = make_optimizer(model, lr=lr, weight_decay=0.0)
    set_lrs(opt, model, 1)
    for _ in range(n):
        loss, _ = model.loss(SeqBatch(seqs), 1)
        opt.zero_grad()
        loss.backward()
        opt.step()


@pytest.mark.parametrize("kd_on", ["table", "modality", "fused"])
def test_skd_ckd_move_the_modality_tables(kd_on):
    """Same init, same steps: the tables end elsewhere with SKD/CKD on, and exactly where the run
    without them ends when their weights are 0 (so the difference is the correlation terms)."""
    ctx = _teacher_ctx()
    seqs = torch.from_numpy(mf.ts.sequences(32, 60, 9))
    base = {"hidden": 16, "layers": 1, "max_len": 8, "dropout": 0.0, "kd_on": kd_on, "async_lr": "off"}
    tables = {}
    for name, over in {"on": {"lambda_skd": 4.0, "lambda_ckd": 0.5, "skd_form": "reference"},
                       "zero": {"lambda_skd": 0.0, "lambda_ckd": 0.0},
                       "off": {"skd": False, "ckd": False}}.items():
        torch.manual_seed(0)
        model = build_model("kdsr", ctx, {**base, **over})
        start = model.mod_emb["text"].weight.detach().clone()
        _steps(model, seqs)
        tables[name] = model.mod_emb["text"].weight.detach().clone()
    assert torch.equal(tables["zero"], tables["off"])
    moved = (tables["off"] - start).norm()
    assert (tables["on"] - tables["off"]).norm() > 0.05 * moved


def test_default_skd_weight_follows_the_form():
    from mmrec.objectives.correlation_kd import SKD_DEFAULT_WEIGHT

    for form in ("paper", "reference"):
        _, model = _model(skd_form=form)
        assert model.weights[("skd", "text")] == SKD_DEFAULT_WEIGHT[form]
        _, model = _model(skd_form=form, lambda_skd=2.5)
        assert model.weights[("skd", "text")] == 2.5
    assert SKD_DEFAULT_WEIGHT == {"reference": 4.0, "paper": 1200.0}


def test_fused_supervision_acts_on_the_scored_vectors():
    """kd_on: fused -> SKD's gradient reaches the ID table (part of the scored vector); on the
    raw tables (the released code) it cannot."""
    batch = SeqBatch(torch.tensor([[0, 1, 2, 3, 4, 5, 6], [2, 9, 4, 7, 1, 3, 8]]))
    for kd_on, reaches in (("fused", True), ("table", False)):
        _, model = _model(kd_on=kd_on, ckd=False)
        _, kd = model.loss_terms(batch)
        grad = torch.autograd.grad(kd["skd"]["text"], model.item_emb.weight, allow_unused=True)[0]
        assert (grad is not None and grad.abs().sum() > 0) == reaches


def test_ckd_head_learns_a_code_map_above_chance():
    ctx = _teacher_ctx(n_items=40)
    seqs = torch.from_numpy(mf.ts.sequences(48, 40, 9))
    torch.manual_seed(0)
    model = build_model("kdsr", ctx, {"hidden": 32, "layers": 1, "max_len": 8, "dropout": 0.0,
                                      "skd": False, "lambda_ckd": 1.0, "async_lr": "off"})
    before = model.diagnostics(SeqBatch(seqs), 1)
    _steps(model, seqs, n=60, lr=3e-2)
    after = model.diagnostics(SeqBatch(seqs), 1)
    for m in ("text", "image"):
        assert after[f"ckd_chance_{m}"] < 0.7
        assert after[f"ckd_acc_{m}"] > after[f"ckd_chance_{m}"] + 0.1
        assert after[f"ckd_acc_{m}"] > before[f"ckd_acc_{m}"]


def test_gradient_shares_reach_the_training_log(tmp_path):
    _, log, _ = mf.overfit("kdsr", tmp_path, epochs=2)
    for key in ("gnorm_skd_rel", "gnorm_ckd_rel", "ckd_acc_text", "ckd_chance_image"):
        assert key in log[-1] and log[-1][key] == log[-1][key]          # present, not nan
    assert log[-1]["gnorm_skd_rel"] > 0


def test_skd_without_projection_compares_the_supervised_vectors():
    from mmrec.objectives.correlation_kd import pair_correlation, sequence_pairs

    _, model = _model(skd_projection=False, ckd=False, skd_form="reference", lambda_skd=1.0)
    assert model.heads["text"].p1 is None
    seq = torch.tensor([[0, 1, 2, 3, 4, 5, 6]])
    _, kd = model.loss_terms(SeqBatch(seq))
    b, i, j = sequence_pairs(SeqBatch(seq).inputs)                     # pairs of the input items
    e = model.fused(torch.arange(21))
    r, _ = model.teachers["text"].pair_targets(i, j)
    r_hat = pair_correlation(e[i], e[j], "cosine")
    want = (((r_hat - r) / 1.5).pow(2) + 1e-8).sum().sqrt()
    assert kd["skd"]["text"].item() == pytest.approx(want.item(), rel=1e-5)
    assert model.leaves_parameters_unused() is True                   # ckd off
