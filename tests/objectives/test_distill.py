import math

import pytest
import torch
import torch.nn.functional as F

from mmrec.objectives.distill import (
    ensemble_logits,
    kd_graph,
    kd_loss,
    kd_schedule,
    online_distillation,
    rampup,
    reference_alpha,
)

MIN = torch.finfo(torch.float32).min


def _reference_weight(epoch: float, alpha: float) -> float:
    w, r = reference_alpha(alpha)
    return kd_schedule(epoch, w, r)


def test_rampup_known_values():
    # reference-methods.md B.4: Arts alpha = 20
    assert round(_reference_weight(1, 20), 3) == 0.011
    assert round(_reference_weight(10, 20), 3) == 0.287
    assert _reference_weight(20, 20) == 1.0
    assert _reference_weight(31, 20) == 1.0
    # H&M alpha = 60 with 30 epochs never exceeds 0.287
    assert round(_reference_weight(30, 60), 3) == 0.287
    # alpha < 1 is a constant weight, alpha = 0 disables KD
    assert _reference_weight(1, 0.5) == 0.5 and _reference_weight(50, 0.5) == 0.5
    assert _reference_weight(7, 0) == 0.0
    assert rampup(3, 0) == 1.0
    assert kd_schedule(10, 2.0, 20) == pytest.approx(2 * math.exp(-5 * 0.25))
    with pytest.raises(ValueError):
        reference_alpha(-1)


def test_kd_ce_matches_formula_and_t_squared():
    torch.manual_seed(0)
    s, t = torch.randn(4, 6), torch.randn(4, 6)
    for temp in (0.3, 1.0, 2.0):
        ce = kd_loss(s, t, temp, "ce")
        ref = -(F.softmax(t / temp, -1) * F.log_softmax(s / temp, -1)).sum(-1).mean() * temp ** 2
        assert torch.allclose(ce, ref, atol=1e-6)
        kl = kd_loss(s, t, temp, "kl")
        ref_kl = F.kl_div(F.log_softmax(s / temp, -1), F.softmax(t / temp, -1),
                          reduction="batchmean") * temp ** 2
        assert torch.allclose(kl, ref_kl, atol=1e-6)
        # CE = KL + T² · teacher entropy
        ent = -(F.softmax(t / temp, -1) * F.log_softmax(t / temp, -1)).sum(-1).mean() * temp ** 2
        assert torch.allclose(ce, kl + ent, atol=1e-5)
    assert kd_loss(t, t, 0.5, "kl").abs() < 1e-6


def test_detach_teacher_gradient_only_to_student():
    torch.manual_seed(0)
    s = torch.randn(3, 5, requires_grad=True)
    t = torch.randn(3, 5, requires_grad=True)
    kd_loss(s, t, 0.5, "ce", detach_teacher=True).backward()
    assert s.grad is not None and s.grad.abs().sum() > 0
    assert t.grad is None
    s.grad = None
    kd_loss(s, t, 0.5, "ce", detach_teacher=False).backward()
    assert t.grad is not None and t.grad.abs().sum() > 0


def test_masked_columns_are_ignored_and_finite():
    torch.manual_seed(0)
    s, t = torch.randn(2, 4), torch.randn(2, 4)
    mask = torch.tensor([[False, True, False, False], [False, False, False, True]])
    sm, tm = s.masked_fill(mask, MIN), t.masked_fill(mask, MIN)
    for kind in ("ce", "kl"):
        got = kd_loss(sm, tm, 0.05, kind)
        assert torch.isfinite(got)
        # equals the loss over the unmasked columns only
        ref = sum(kd_loss(s[i][~mask[i]][None], t[i][~mask[i]][None], 0.05, kind) for i in range(2)) / 2
        assert torch.allclose(got, ref, rtol=1e-4)
    ens = ensemble_logits([sm, tm, sm])
    assert torch.isfinite(ens).all() and (ens[mask] == MIN).all()


def test_kd_directions():
    assert kd_graph(["id", "text", "image"]) == [("text", "id"), ("image", "id"), ("id", "ensemble")]
    assert kd_graph(["id", "text"]) == [("text", "id"), ("id", "ensemble")]
    assert kd_graph(["text", "image"]) == [("text", "ensemble"), ("image", "ensemble")]
    assert kd_graph(["id"]) == []


def test_online_distillation_gradients_follow_the_graph():
    torch.manual_seed(0)
    lg = {m: torch.randn(3, 5, requires_grad=True) for m in ("id", "text", "image")}
    terms = online_distillation(lg, temperature=0.5)
    assert set(terms) == {"kd_text_id", "kd_image_id", "kd_id_ensemble"}
    # text <- id: only text receives gradient from this term
    terms["kd_text_id"].backward()
    assert lg["text"].grad.abs().sum() > 0
    assert lg["id"].grad is None and lg["image"].grad is None
    # id <- ensemble with a detached teacher: only id moves
    lg = {m: torch.randn(3, 5, requires_grad=True) for m in ("id", "text", "image")}
    online_distillation(lg, temperature=0.5)["kd_id_ensemble"].backward()
    assert lg["id"].grad.abs().sum() > 0
    assert lg["text"].grad is None and lg["image"].grad is None
    assert online_distillation({"id": torch.randn(2, 3)}) == {}


def test_online_distillation_values_equal_kd_loss_per_edge():
    torch.manual_seed(0)
    lg = {m: torch.randn(4, 6) for m in ("id", "text", "image")}
    off = torch.rand(4, 6)
    for kind in ("ce", "kl"):
        for detach in (True, False):
            terms = online_distillation(lg, 0.3, kind, detach, off)
            ens = ensemble_logits(list(lg.values()))
            assert torch.allclose(terms["kd_text_id"], kd_loss(lg["text"], lg["id"], 0.3, kind, detach, off))
            assert torch.allclose(terms["kd_id_ensemble"], kd_loss(lg["id"], ens, 0.3, kind, detach, off))
