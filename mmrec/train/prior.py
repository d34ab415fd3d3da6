"""Choosing the content prior's beta when training ends (mmrec.models.content_prior).

The best checkpoint's validation ranks are recomputed with each candidate beta; the beta with the
best `select_metric` (the smallest on ties, so 0 wins unless the prior helps) is written into
model.pt with the validation row of every candidate, and model.pt's `valid` becomes the chosen
one's: what the saved model scores.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Optional, Sequence, Union

from mmrec.data.sequences import EvalSplit
from mmrec.models.base import ModelContext, SeqRecModel
from mmrec.models.checkpoint import read_checkpoint, save_torch
from mmrec.models.content_prior import PRIOR_BETAS, ContentPrior, prior_knn
from mmrec.train.loop import EvalSettings, selection_score, validation_columns


def candidate_betas(setting: Union[str, float]) -> tuple[float, ...]:
    """The betas a `content_prior` setting chooses among: none for off, PRIOR_BETAS for auto,
    the one given otherwise."""
    if setting == "off":
        return ()
    return PRIOR_BETAS if setting == "auto" else (float(setting),)


def choose_beta(rows: Sequence[dict[str, Any]], select_metric: str) -> dict[str, Any]:
    """The row (`beta` plus `valid_*` columns) with the best `valid_<select_metric>`; the
    smallest beta among equals. A NaN score never wins."""
    best: Optional[dict[str, Any]] = None
    for row in sorted(rows, key=lambda r: r["beta"]):
        score = selection_score(row, select_metric)
        if not math.isnan(score) and (best is None or score > selection_score(best, select_metric)):
            best = row
    if best is None:
        raise ValueError(f"content prior: no beta has a finite valid_{select_metric}")
    return best


def prior_rows(model: SeqRecModel, ctx: ModelContext, valid: EvalSplit, betas: Sequence[float],
               eval_settings: EvalSettings) -> list[dict[str, Any]]:
    """One row per beta: `beta` and the validation columns of the train log (overall, cold, Q1)
    of `model` with that prior."""
    knn = prior_knn(model, ctx)
    rows = []
    for beta in betas:
        scored = ContentPrior(model, knn, beta).eval() if beta else model.eval()
        rows.append({"beta": float(beta), **validation_columns(scored, ctx, valid, eval_settings)})
    return rows


def fit_content_prior(model: SeqRecModel, ctx: ModelContext, valid: Optional[EvalSplit], model_pt: Path,
                      setting: Union[str, float], select_metric: str,
                      eval_settings: EvalSettings = EvalSettings()) -> Optional[dict[str, Any]]:
    """Choose the content prior of the trained model saved at `model_pt` and record it there.

    `model` is rebuilt with the checkpoint's (best) weights. Returns model.pt's new
    `content_prior` entry ({setting, beta, rows}), or None when there is nothing to choose: the
    setting is off, or it is auto and there is no validation split (a fixed beta needs none).
    """
    betas = candidate_betas(setting)
    if not betas or (valid is None and len(betas) > 1):
        return None
    ckpt = read_checkpoint(model_pt)
    model.load_state_dict(ckpt["state_dict"])
    model.to(ctx.device)
    if valid is None:
        entry: dict[str, Any] = {"setting": setting, "beta": betas[0], "rows": []}
    else:
        rows = prior_rows(model, ctx, valid, betas, eval_settings)
        chosen = choose_beta(rows, select_metric)
        entry = {"setting": setting, "beta": chosen["beta"], "rows": rows}
        ckpt["valid"] = {k: v for k, v in chosen.items() if k != "beta"}
    ckpt["content_prior"] = entry
    save_torch(ckpt, model_pt)
    return entry
