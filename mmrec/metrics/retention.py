"""Modality retention: how much of a frozen modality's item-item similarity structure a learned
item table keeps.

On a fixed, seeded sample of item pairs (both items have the modality), we correlate
cos(table[i], table[j]) with cos(features[i], features[j]). This is the quantity KDSR distils
towards; the train loop logs it per epoch for every (table, modality) combination.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def retention_pairs(has_feature: torch.Tensor, n_pairs: int, seed: int) -> torch.Tensor:
    """A fixed sample of `n_pairs` item pairs [P, 2] (long, on CPU) for retention measurement.

    has_feature: [N+1] bool; row 0 is padding and is never sampled, whatever its flag says.
    Both items of a pair have the feature and differ (i != j). Pairs are drawn with replacement
    (a pair may repeat on tiny catalogues) from a generator seeded by `seed` alone, so the same
    inputs give the same pairs on every machine and every epoch. Fewer than two eligible items
    give an empty [0, 2] tensor.
    """
    if n_pairs < 0:
        raise ValueError(f"n_pairs must be >= 0, got {n_pairs}")
    ok = has_feature.detach().to("cpu", torch.bool).clone()
    if ok.numel() > 0:
        ok[0] = False  # padding
    eligible = ok.nonzero(as_tuple=True)[0]                      # [M]
    m = int(eligible.numel())
    if m < 2 or n_pairs == 0:
        return torch.zeros((0, 2), dtype=torch.long)
    gen = torch.Generator().manual_seed(int(seed))
    a = torch.randint(0, m, (n_pairs,), generator=gen)
    # An offset in 1..m-1 makes b uniform over the other m-1 items, so i != j without rejection.
    b = (a + torch.randint(1, m, (n_pairs,), generator=gen)) % m
    return torch.stack([eligible[a], eligible[b]], dim=1)        # [P, 2]


def _pair_cosines(x: torch.Tensor, pairs: torch.Tensor) -> torch.Tensor:
    """cos(x[i], x[j]) for each pair, in float32: [P]."""
    p = pairs.to(x.device)
    a = x[p[:, 0]].float()                                        # [P, D]
    b = x[p[:, 1]].float()
    return F.cosine_similarity(a, b, dim=-1, eps=1e-12)


def _average_ranks(x: torch.Tensor) -> torch.Tensor:
    """0-based ranks with ties given their average rank (as Spearman's rho needs): [P] float64."""
    x = x.double()
    order = torch.argsort(x, stable=True)
    sorted_x = x[order]
    # Group equal values; each group's members get the mean of the positions they span.
    new_group = torch.ones_like(sorted_x, dtype=torch.bool)
    new_group[1:] = sorted_x[1:] != sorted_x[:-1]
    group_id = torch.cumsum(new_group.long(), 0) - 1               # [P]
    pos = torch.arange(x.numel(), dtype=torch.float64, device=x.device)
    n_groups = int(group_id[-1]) + 1
    sums = torch.zeros(n_groups, dtype=torch.float64, device=x.device).index_add_(0, group_id, pos)
    counts = torch.zeros(n_groups, dtype=torch.float64, device=x.device).index_add_(
        0, group_id, torch.ones_like(pos))
    ranks = torch.empty_like(pos)
    ranks[order] = (sums / counts)[group_id]
    return ranks


def _pearson(x: torch.Tensor, y: torch.Tensor) -> float:
    x = x.double() - x.double().mean()
    y = y.double() - y.double().mean()
    denom = torch.sqrt((x * x).sum() * (y * y).sum())
    if float(denom) == 0.0:
        return math.nan  # a constant side has no correlation to speak of
    return float((x * y).sum() / denom)


@torch.no_grad()
def modality_retention(table: torch.Tensor, features: torch.Tensor, pairs: torch.Tensor, *,
                       method: str = "pearson") -> float:
    """Correlation between learned and frozen item-item cosine similarities over `pairs`.

    table:    [N+1, D] learned item vectors (any float dtype, any device).
    features: [N+1, d] frozen modality vectors, indexed by the same item ids.
    pairs:    [P, 2] item ids from `retention_pairs`.
    method:   "pearson" (default) or "spearman" (Pearson on average ranks).
    Returns NaN when there are fewer than two pairs or one side's similarities are constant.
    """
    if method not in ("pearson", "spearman"):
        raise ValueError(f"unknown retention method {method!r}; known: pearson, spearman")
    if table.shape[0] != features.shape[0]:
        raise ValueError(f"table has {table.shape[0]} rows but features have {features.shape[0]}; "
                         "both must be indexed by item_idx with row 0 as padding")
    if pairs.numel() == 0 or pairs.shape[0] < 2:
        return math.nan
    learned = _pair_cosines(table.detach(), pairs).cpu()           # [P]
    frozen = _pair_cosines(features.detach(), pairs).cpu()         # [P]
    if method == "spearman":
        learned, frozen = _average_ranks(learned), _average_ranks(frozen)
    return _pearson(learned, frozen)
