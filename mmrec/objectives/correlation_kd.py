"""KDSR correlation distillation: in-sequence item pairs, the SKD and CKD losses, their weights.

Pure functions over tensors, shared by `kdsr` and `odmt_kdsr`. Formulas follow the KDSR paper
(Hu et al., ECIR 2024, arXiv 2401.07257) and its released code (github.com/HoldenHu/KDSR,
model_corvector.py: `calculate_teach_cor_loss`, `calculate_teach_corcode_loss`):

- SKD (paper form):     mean over pairs of (sigmoid(r / tau) - sigmoid(r_hat / tau))^2
- SKD (reference form): (1/B) sum_b sqrt(sum_{pairs of b} (((r_hat - r) / tau)^2 + 1e-8))
- CKD:                  mean over pairs of cross_entropy(z_ij, c_ij)
"""

from __future__ import annotations

from typing import Literal, Optional

import torch
import torch.nn.functional as F

SkdForm = Literal["paper", "reference"]
_REF_EPS = 1e-8
#: the teacher's code for pairs where an item lacks the modality (= mmrec.teacher.IGNORE_CODE)
IGNORE_CODE = -100


def sequence_pairs(seq: torch.Tensor, include_diagonal: bool = False
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The unique item pairs inside each row of `seq` [B, L] (0 = padding, never paired).

    Returns (b, i, j), each [P] long: the row of the pair and its two item ids with i < j
    (i <= j with `include_diagonal`, which adds (i, i) once per unique item). A repeated item
    counts once, so a pair appears once per row however often its items repeat. Order is
    deterministic: by row, then i, then j.
    """
    s, _ = seq.long().sort(dim=1)                                     # [B, L]
    first = torch.ones_like(s, dtype=torch.bool)
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    valid = (s > 0) & first                                           # [B, L] unique real items
    L = s.shape[1]
    upper = torch.ones(L, L, dtype=torch.bool, device=s.device).triu(0 if include_diagonal else 1)
    mask = valid[:, :, None] & valid[:, None, :] & upper              # [B, L, L]
    b, p, q = mask.nonzero(as_tuple=True)
    return b, s[b, p], s[b, q]


def skd_loss(r_hat: torch.Tensor, r: torch.Tensor, tau: float = 1.5, form: SkdForm = "paper",
             rows: Optional[torch.Tensor] = None, n_rows: Optional[int] = None) -> torch.Tensor:
    """Holistic-correlation distillation loss over P pairs.

    r_hat: [P] student correlations; r: [P] teacher correlations (no gradient needed).
    form="paper":     mean (sigmoid(r/tau) - sigmoid(r_hat/tau))^2.
    form="reference": the reference code's per-sequence Frobenius norm of (r_hat - r)/tau,
                      averaged over the `n_rows` sequences of the batch; needs `rows` [P] (the
                      batch row of each pair, as `sequence_pairs` returns) and `n_rows` (B).
    Zero pairs give a zero loss that still carries the graph of r_hat.
    """
    r = r.to(r_hat.dtype)
    if r_hat.numel() == 0:
        return r_hat.sum() * 0.0
    if form == "paper":
        return (torch.sigmoid(r / tau) - torch.sigmoid(r_hat / tau)).pow(2).mean()
    if form == "reference":
        if rows is None or n_rows is None:
            raise ValueError("skd_loss(form='reference') needs rows and n_rows")
        sq = ((r_hat - r) / tau).pow(2) + _REF_EPS                    # [P]
        per_row = torch.zeros(n_rows, dtype=sq.dtype, device=sq.device).index_add(0, rows, sq)
        has = torch.zeros(n_rows, dtype=torch.bool, device=sq.device)
        has[rows] = True
        # Rows without pairs contribute 0 (sqrt(0) has no finite gradient, so skip them).
        return torch.where(has, per_row.clamp_min(_REF_EPS).sqrt(), torch.zeros_like(per_row)).sum() / n_rows
    raise ValueError(f"unknown skd form {form!r}; known: paper, reference")


def ckd_loss(logits: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Dissected-correlation distillation: mean cross-entropy of the teacher codes.

    logits: [P, K] predicted code scores; codes: [P] long teacher codes in 0..K-1, or
    IGNORE_CODE (-100, the teacher's code for pairs lacking a feature), which is left out.
    No usable pair gives a zero loss that still carries the graph of `logits`.
    """
    codes = codes.long()
    if int((codes != IGNORE_CODE).sum()) == 0:
        return logits.sum() * 0.0
    return F.cross_entropy(logits.float(), codes, ignore_index=IGNORE_CODE)


#: lambda1 of each SKD form when params leave it unset. `reference`: the released code's 4 (its
#: configs). `paper`: the sigmoid-MSE is a mean over pairs of squared sigmoid gaps, about
#: (1/(4 tau))^2 (r_hat - r)^2, which is ~10^-4 of the Frobenius form's value and (with ~30 pairs
#: per sequence, measured on a synthetic batch) ~330x smaller in gradient; the paper's own lambda1 is not
#: in the text available to us, so its default is the released weight scaled to the same gradient
#: size. The training log's `gnorm_skd_rel` shows what either weight does on real data.
SKD_DEFAULT_WEIGHT: dict[str, float] = {"reference": 4.0, "paper": 1200.0}


def skd_weight(form: SkdForm, lambda_skd: Optional[float]) -> float:
    """lambda1 for SKD form `form`: the given value, or the form's own default when None."""
    if form not in SKD_DEFAULT_WEIGHT:
        raise ValueError(f"unknown skd form {form!r}; known: {', '.join(SKD_DEFAULT_WEIGHT)}")
    return SKD_DEFAULT_WEIGHT[form] if lambda_skd is None else float(lambda_skd)


def kd_weights(lambda_skd: float = 4.0, lambda_ckd: float = 0.5,
               reference_weight_bug: bool = False) -> dict[tuple[str, str], float]:
    """Weight of each (loss, modality) term, keys ("skd"|"ckd", "image"|"text").

    Intended: every SKD term x lambda_skd (lambda1), every CKD term x lambda_ckd (lambda2).
    `reference_weight_bug` reproduces the reference code's cross-wiring: image CKD is
    multiplied by the text-SKD weight and text SKD by the image-CKD weight, so the image terms
    both get lambda1 and the text terms both get lambda2.
    """
    if reference_weight_bug:
        return {("skd", "image"): lambda_skd, ("ckd", "image"): lambda_skd,
                ("skd", "text"): lambda_ckd, ("ckd", "text"): lambda_ckd}
    return {("skd", "image"): lambda_skd, ("ckd", "image"): lambda_ckd,
            ("skd", "text"): lambda_skd, ("ckd", "text"): lambda_ckd}


def code_accuracy(logits: torch.Tensor, codes: torch.Tensor) -> tuple[float, float]:
    """(accuracy of argmax `logits` [P, K] on the teacher `codes` [P], chance = the share of the
    most frequent code among them), over the pairs that have a code; (nan, nan) when none has."""
    ok = codes != IGNORE_CODE
    if int(ok.sum()) == 0:
        return float("nan"), float("nan")
    c = codes[ok].long()
    acc = (logits[ok].argmax(-1) == c).float().mean()
    chance = torch.bincount(c).max().float() / c.numel()
    return float(acc), float(chance)


def async_lr_scale(mode: Literal["off", "constant", "milestone"], epoch: int,
                   milestones: tuple[int, int] = (5, 10)) -> float:
    """Learning-rate multiplier of the modality tables at 1-based `epoch` (KDSR asynchronous
    learning): off -> 1; constant -> 1/4; milestone -> 1/4, then 1/2 from milestones[0], then 1
    from milestones[1]."""
    if mode == "off":
        return 1.0
    if mode == "constant":
        return 0.25
    if mode == "milestone":
        if epoch >= milestones[1]:
            return 1.0
        return 0.5 if epoch >= milestones[0] else 0.25
    raise ValueError(f"unknown async_lr mode {mode!r}; known: off, constant, milestone")


def pair_correlation(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Correlation of row-paired vectors a, b [..., d] -> [...]: THE SAME function the teacher
    uses (mmrec.teacher.targets.correlation), so r_hat and r can never disagree in meaning."""
    from mmrec.teacher.targets import correlation

    return correlation(a, b, kind)
