"""Online distillation between the branches of a multi-branch recommender (ODMT, ACM MM 2023).

Each branch m produces logits ℓ^m over the same candidate columns. With temperature T:

    KD(S <- T) = T² · mean_rows  CE(softmax(ℓ^T/T), log_softmax(ℓ^S/T))     (kd_loss="ce", reference code)
               = T² · mean_rows  KL(softmax(ℓ^T/T) || softmax(ℓ^S/T))        (kd_loss="kl", paper eq. 9)

Directions (paper eq. 9 and the reference code agree): ID -> text, ID -> image, ensemble -> ID,
where the ensemble is the mean of all branch logits. Without an ID branch every modality
branch learns from the ensemble instead; with a single branch there is nothing to distil.

`detach_teacher` (default True) stops the gradient at the teacher's soft targets. The reference
code does not detach, so its CE form also pushes each teacher toward lower entropy and toward its
students (the ensemble, which contains ID, is dragged toward ID). With a detached teacher the
CE and KL forms have the same gradient and differ only by the teacher's entropy in the logged
value.

The weight of the summed KD terms is `kd_weight · ramp(epoch)`:
    ramp(e) = exp(-5 (1 - min(e, R)/R)²) for rampup_epochs R >= 1, 1 for R = 0.
`reference_alpha(α)` maps the reference's single overloaded α onto (kd_weight, rampup_epochs):
α >= 1 -> (1, α); 0 < α < 1 -> (α, 0); α = 0 -> (0, 0), i.e. KD off.
"""

from __future__ import annotations

import math
from typing import Literal, Optional, Sequence

import torch
import torch.nn.functional as F

KdKind = Literal["ce", "kl"]

#: (student, teacher) pairs of the default graph; "ensemble" is the mean of all branches.
ID_GRAPH: tuple[tuple[str, str], ...] = (("text", "id"), ("image", "id"), ("id", "ensemble"))


def rampup(epoch: float, rampup_epochs: float) -> float:
    """Laine & Aila ramp-up exp(-5 (1 - min(e, R)/R)²) at 1-based `epoch`; 1 when R = 0."""
    if rampup_epochs < 0:
        raise ValueError(f"rampup_epochs must be >= 0, got {rampup_epochs}")
    if rampup_epochs == 0:
        return 1.0
    phase = 1.0 - min(float(epoch), float(rampup_epochs)) / float(rampup_epochs)
    return math.exp(-5.0 * phase * phase)


def kd_schedule(epoch: float, kd_weight: float, rampup_epochs: float) -> float:
    """The weight w(e) of the summed KD terms at 1-based `epoch`."""
    return 0.0 if kd_weight == 0 else kd_weight * rampup(epoch, rampup_epochs)


def reference_alpha(alpha: float) -> tuple[float, float]:
    """(kd_weight, rampup_epochs) equivalent to the reference code's overloaded α."""
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return 0.0, 0.0
    if alpha < 1:
        return float(alpha), 0.0
    return 1.0, float(alpha)


def _scaled(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    # Masked entries sit at the fp32 minimum; dividing by T < 1 would overflow them to -inf and
    # 0·(-inf) = nan in the loss, so clamp back to the finite minimum.
    return (logits.float() / temperature).clamp_min(torch.finfo(torch.float32).min)


def _log_probs(logits: torch.Tensor, temperature: float, offset: Optional[torch.Tensor]) -> torch.Tensor:
    x = _scaled(logits, temperature)
    if offset is not None:
        x = x + offset
    return torch.log_softmax(x, dim=-1)                                 # [M, C]


def _kd_from_log_probs(log_q: torch.Tensor, log_p: torch.Tensor, temperature: float,
                       kind: KdKind, offset: Optional[torch.Tensor] = None) -> torch.Tensor:
    """T² · mean_rows of CE(p, q) or KL(p || q) from student/teacher log-probabilities.

    With multiplicity offsets (a column c standing for k_c identical slots), the per-slot CE is
    -Σ_c P(c)·(log Q(c) - log k_c): each slot's student log-probability is log Q(c) - log k_c.
    The Σ_c P(c)·log k_c term depends on the teacher, so it is kept (a non-detached teacher's
    gradient would differ from the per-slot reference otherwise). KL needs no correction: the
    log k_c of both sides cancel.
    """
    if kind == "ce":
        if offset is not None:
            log_q = log_q - offset
        per_row = -(log_p.exp() * log_q).sum(-1).mean()
    elif kind == "kl":
        # exp(log_p) = 0 on masked columns and both sides are finite there, so they add 0.
        per_row = F.kl_div(log_q, log_p, reduction="batchmean", log_target=True)
    else:
        raise ValueError(f"unknown kd_loss {kind!r}; known: ce, kl")
    return temperature * temperature * per_row


def kd_loss(student: torch.Tensor, teacher: torch.Tensor, temperature: float = 1.0,
            kind: KdKind = "kl", detach_teacher: bool = True,
            offset: Optional[torch.Tensor] = None) -> torch.Tensor:
    """T²-scaled distillation loss of `student` [M, C] toward `teacher` [M, C] logits, averaged
    over rows. Masked columns (fp32 minimum in both) contribute nothing.

    `offset` [M, C] is added to both sides after the division by T: the column multiplicities
    of a unique-item candidate set (mmrec.objectives.losses.row_log_mult), which makes the loss
    (value and both gradients, CE and KL, detached teacher or not) equal to the one over the
    per-slot columns they stand for.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if kind not in ("ce", "kl"):
        raise ValueError(f"unknown kd_loss {kind!r}; known: ce, kl")
    if student.shape != teacher.shape:
        raise ValueError(f"kd_loss: student {tuple(student.shape)} vs teacher {tuple(teacher.shape)}")
    if student.shape[0] == 0:
        return student.sum() * 0.0
    if detach_teacher:
        with torch.no_grad():
            log_p = _log_probs(teacher, temperature, offset)
    else:
        log_p = _log_probs(teacher, temperature, offset)
    return _kd_from_log_probs(_log_probs(student, temperature, offset), log_p, temperature, kind, offset)


def ensemble_logits(logits: Sequence[torch.Tensor]) -> torch.Tensor:
    """Mean of branch logits [M, C], safe with fp32-minimum masks (divide before summing)."""
    n = len(logits)
    total = torch.stack([lg.float() / n for lg in logits]).sum(0)
    return total.clamp_min(torch.finfo(torch.float32).min)


def kd_graph(branches: Sequence[str]) -> list[tuple[str, str]]:
    """(student, teacher) edges for the present branches (see module docstring)."""
    branches = list(branches)
    if len(branches) < 2:
        return []
    if "id" in branches:
        return [(s, t) for s, t in ID_GRAPH if s in branches and (t in branches or t == "ensemble")]
    return [(b, "ensemble") for b in branches]


def online_distillation(logits: dict[str, torch.Tensor], temperature: float = 1.0,
                        kind: KdKind = "kl", detach_teacher: bool = True,
                        offset: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
    """The KD terms of the branch logits `logits` {branch: [M, C]}, keyed "kd_<student>_<teacher>"
    (unweighted; the caller multiplies their sum by `kd_schedule`). `offset`: see `kd_loss`;
    the ensemble is the mean of the logits without it.

    Each distribution is computed once however many edges use it (ID teaches two students);
    detached teachers are computed without autograd.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    edges = kd_graph(list(logits))
    if not edges:
        return {}
    if next(iter(logits.values())).shape[0] == 0:
        return {f"kd_{s}_{t}": next(iter(logits.values())).sum() * 0.0 for s, t in edges}

    def source(name: str) -> torch.Tensor:
        return ensemble_logits(list(logits.values())) if name == "ensemble" else logits[name]

    students: dict[str, torch.Tensor] = {}
    teachers: dict[str, torch.Tensor] = {}
    for s, t in edges:
        if s not in students:
            students[s] = _log_probs(source(s), temperature, offset)
        if t not in teachers:
            if detach_teacher:
                with torch.no_grad():
                    teachers[t] = _log_probs(source(t), temperature, offset)
            else:
                teachers[t] = _log_probs(source(t), temperature, offset)
    return {f"kd_{s}_{t}": _kd_from_log_probs(students[s], teachers[t], temperature, kind, offset)
            for s, t in edges}
