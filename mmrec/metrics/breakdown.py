"""Metric breakdowns: by target popularity group and by history length.

Popularity groups follow the ODMT paper's Figure 4: group 0 holds the items never seen in
training (cold items); the warm items, sorted by training popularity, are cut into
`n_groups` groups of (as near as possible) equal item count, group 1 the least popular.
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from mmrec.metrics.formulas import metrics_from_ranks


def popularity_groups(item_pop: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Group id per item [N+1] long: 0 for cold items (and for padding row 0), else 1..n_groups.

    item_pop: [N+1] training interaction counts (row 0 = padding).
    Warm items are ordered by (popularity, item id) and split into equal-count groups, so items
    with equal popularity may straddle a boundary; the order is deterministic.
    """
    if n_groups < 1:
        raise ValueError(f"n_groups must be >= 1, got {n_groups}")
    pop = item_pop.detach().cpu().long()
    groups = torch.zeros_like(pop)
    warm = (pop > 0).nonzero(as_tuple=True)[0]
    warm = warm[warm > 0]                                               # [M] never padding
    m = int(warm.numel())
    if m == 0:
        return groups
    # Stable sort by popularity keeps item-id order among ties (warm is ascending already).
    order = torch.argsort(pop[warm], stable=True)
    position = torch.empty(m, dtype=torch.long)
    position[order] = torch.arange(m)
    groups[warm] = 1 + (position * n_groups) // m
    return groups


def history_bucket_labels(edges: Sequence[int]) -> list[str]:
    """Human labels of the buckets `history_buckets(edges)` produces, e.g. [3, 5] ->
    ["1-2", "3-4", "5+"]. Edges are the first lengths of each new bucket."""
    labels, lo = [], 1
    for e in edges:
        labels.append(f"{lo}-{e - 1}" if e - 1 > lo else f"{lo}")
        lo = e
    labels.append(f"{lo}+")
    return labels


def history_buckets(lengths: torch.Tensor, edges: Sequence[int]) -> torch.Tensor:
    """Bucket index per user [U] long for history lengths [U] (bucket b holds edges[b-1] <= len < edges[b])."""
    if list(edges) != sorted(set(edges)) or (edges and edges[0] < 2):
        raise ValueError(f"history bucket edges must be strictly increasing and >= 2, got {list(edges)}")
    return torch.bucketize(lengths.long().cpu(), torch.tensor(list(edges), dtype=torch.long), right=True)


def grouped_metrics(ranks: torch.Tensor, group: torch.Tensor, n_groups: int, ks: Sequence[int],
                    labels: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """Metrics per group id 0..n_groups-1 over the users whose `group` [U] equals it.

    Every group appears, with `n_users` (possibly 0, then all metrics are 0.0).
    """
    out = []
    for g in range(n_groups):
        sel = group == g
        row: dict[str, Any] = {"group": g, "n_users": int(sel.sum())}
        if labels is not None:
            row["label"] = labels[g]
        row.update(metrics_from_ranks(ranks[sel].cpu().numpy(), ks))
        out.append(row)
    return out


def popularity_group_labels(n_groups: int) -> list[str]:
    """Labels of groups 0..n_groups: "cold", then "Q1" (least popular) .. "Q<n_groups>"."""
    return ["cold", *(f"Q{g}" for g in range(1, n_groups + 1))]


def popularity_group_info(item_pop: torch.Tensor, groups: torch.Tensor, n_groups: int) -> list[dict[str, Any]]:
    """Per popularity group: item count and the training-popularity range it covers."""
    pop = item_pop.detach().cpu().long()
    info = []
    for g, label in enumerate(popularity_group_labels(n_groups)):
        sel = groups == g
        sel[0] = False                                                  # padding is no item
        vals = pop[sel]
        info.append({"group": g, "label": label,
                     "n_items": int(sel.sum()),
                     "n_train_min": int(vals.min()) if vals.numel() else None,
                     "n_train_max": int(vals.max()) if vals.numel() else None})
    return info
