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
    # the released ODMT code's sigmoid ramp-up (github.com/xyliugo/ODMT, code/run_arts.py): Arts alpha = 20
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


def _per_slot_reference_ce(seq, us, ut, ts, tt, log_pop, temperature):
    """The reference code's distillation, written plainly: one softmax column per batch slot
    (padding and the row user's own other slots excluded, the label slot kept), teacher not
    detached, T² · mean over rows of CE(softmax(teacher/T), log_softmax(student/T))."""
    B, S = seq.shape
    slots = seq.reshape(-1).tolist()
    losses = []
    m = 0
    for b in range(B):
        own = set(seq[b].tolist())
        for t in range(S - 1):
            if seq[b, t] == 0 or seq[b, t + 1] == 0:
                continue
            label = b * S + t + 1
            keep = [c for c, item in enumerate(slots)
                    if c == label or (item != 0 and item not in own)]
            items = torch.tensor([slots[c] for c in keep])
            ls = (ts[items] @ us[m] - log_pop[items]) / temperature
            lt = (tt[items] @ ut[m] - log_pop[items]) / temperature
            losses.append(-(torch.softmax(lt, 0) * torch.log_softmax(ls, 0)).sum())
            m += 1
    return temperature ** 2 * torch.stack(losses).mean()


def test_ce_with_live_teacher_matches_the_per_slot_reference():
    from mmrec.data.sequences import SeqBatch
    from mmrec.objectives.losses import (
        candidate_logits,
        inbatch_unique_candidates,
        log_popularity,
        row_log_mult,
        training_rows,
    )

    seq = torch.tensor([[0, 0, 1, 2, 3, 2],
                        [0, 3, 1, 4, 1, 5],
                        [2, 2, 6, 3, 1, 4],
                        [0, 0, 0, 5, 6, 1]])
    batch = SeqBatch(seq)
    rows = training_rows(batch)
    log_pop = log_popularity(torch.tensor([0, 5, 3, 4, 2, 2, 1]))
    g = torch.Generator().manual_seed(3)
    base = {k: torch.randn(n, 6, generator=g) for k, n in
            (("us", len(rows[0])), ("ut", len(rows[0])), ("ts", 7), ("tt", 7))}
    temperature = 0.7

    ref_in = {k: v.clone().requires_grad_(True) for k, v in base.items()}
    ref = _per_slot_reference_ce(seq, ref_in["us"], ref_in["ut"], ref_in["ts"], ref_in["tt"], log_pop,
                                 temperature)
    ref.backward()

    got_in = {k: v.clone().requires_grad_(True) for k, v in base.items()}
    cands = inbatch_unique_candidates(seq, rows, log_pop)
    ls = candidate_logits(got_in["us"], got_in["ts"][cands.ids], cands, multiplicity=False)
    lt = candidate_logits(got_in["ut"], got_in["tt"][cands.ids], cands, multiplicity=False)
    got = kd_loss(ls, lt, temperature, "ce", detach_teacher=False, offset=row_log_mult(cands))
    got.backward()
    assert torch.allclose(got, ref, atol=1e-5)
    for k in base:  # student and teacher: user vectors and item tables
        assert ref_in[k].grad.abs().max() > 0
        assert torch.allclose(got_in[k].grad, ref_in[k].grad, atol=1e-5), k
    # online_distillation (what ODMT calls) takes the same path
    got_in2 = {k: v.clone().requires_grad_(True) for k, v in base.items()}
    logits = {"id": candidate_logits(got_in2["ut"], got_in2["tt"][cands.ids], cands, multiplicity=False),
              "text": candidate_logits(got_in2["us"], got_in2["ts"][cands.ids], cands, multiplicity=False)}
    kd = online_distillation(logits, temperature, "ce", detach_teacher=False, offset=row_log_mult(cands))
    assert torch.allclose(kd["kd_text_id"], ref, atol=1e-5)
