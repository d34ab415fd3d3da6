"""How strongly each term of a composite loss pulls on the parameters it shares with the main
term: the training log's `gnorm_<term>_rel` columns (KDSR's SKD/CKD, ODMT's distillation)."""

from __future__ import annotations

import math
from typing import Sequence

import torch


def relative_grad_norms(terms: dict[str, torch.Tensor], params: Sequence[torch.Tensor],
                        ref: str = "rec") -> dict[str, float]:
    """`gnorm_<name>_rel` = ||d term/d theta|| / ||d terms[ref]/d theta|| for every other term,
    both norms over the parameters theta that receive a gradient from both (the shared ones).

    terms: {name: scalar loss, already weighted as it enters the total}; params: candidates for
    theta. nan when a term shares no parameter with `ref` or `ref`'s gradient there is zero.
    Leaves the parameters' `.grad` untouched (torch.autograd.grad).
    """
    params = [p for p in params if p.requires_grad]
    grads = {}
    for name, value in terms.items():
        if not value.requires_grad:
            grads[name] = [None] * len(params)
            continue
        grads[name] = torch.autograd.grad(value, params, retain_graph=True, allow_unused=True)
    out: dict[str, float] = {}
    for name, g in grads.items():
        if name == ref:
            continue
        shared = [k for k, (a, b) in enumerate(zip(g, grads[ref])) if a is not None and b is not None]
        num = math.sqrt(sum(float(g[k].float().pow(2).sum()) for k in shared))
        den = math.sqrt(sum(float(grads[ref][k].float().pow(2).sum()) for k in shared))
        out[f"gnorm_{name}_rel"] = num / den if shared and den > 0 else float("nan")
    return out
