"""Top-k recommendations from a trained model: the batched selection the export stage streams
(`mmrec.serving.export`), and one user's list for `mmrec recommend --history`.

Ties are broken by item id (lower first), so the same scores give the same list whatever the
batch a user is scored in, and the export and the model path agree row for row.
"""

from __future__ import annotations

import math

import torch

from mmrec.io import module_device


def top_k_scores(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(values [B, k'], item ids [B, k']) of each row's k best scores, k' = min(k, columns).

    Order: score descending, then item id ascending. Excluded items (score -inf) can appear
    only when a row has fewer than k finite scores; callers drop them.
    """
    k = min(k, scores.shape[1])
    # One more than asked: the (k+1)-th score tells whether the boundary is tied, far cheaper
    # than counting the scores >= the k-th over every item.
    extra = k < scores.shape[1]
    vals, idx = torch.topk(scores, k + extra, dim=1)                  # [B, k(+1)], sorted
    ambiguous = vals[:, k] == vals[:, k - 1] if extra else torch.zeros(len(vals), dtype=torch.bool)
    vals, idx = vals[:, :k].contiguous(), idx[:, :k].contiguous()
    kth = vals[:, -1:]                                                # [B, 1]
    # torch.topk picks arbitrarily among scores tied with the k-th: redo the rows where more
    # items than fit tie at the boundary, taking the lowest ids among the tied ones.
    if bool(ambiguous.any()):
        rows = ambiguous.nonzero().flatten()
        s = scores[rows]                                              # [R, N]
        above = s > kth[rows]
        tied = s == kth[rows]
        need = k - above.sum(1, keepdim=True)
        chosen = above | (tied & (tied.cumsum(1) <= need))            # exactly k per row
        cols = chosen.nonzero()[:, 1].view(len(rows), k)              # ascending ids per row
        idx[rows] = cols
        vals[rows] = s.gather(1, cols)
    # Order inside the k: ids ascending first, then a stable sort by score keeps that among ties.
    idx, order = idx.sort(dim=1)
    vals = vals.gather(1, order)
    vals, order = vals.sort(dim=1, descending=True, stable=True)
    return vals, idx.gather(1, order)


def left_pad(items: list[int], width: int) -> torch.Tensor:
    """The last `width` ids, left-padded with 0: [1, width] long (the models' input layout)."""
    tail = items[-width:] if width > 0 else []
    return torch.tensor([[0] * (width - len(tail)) + tail], dtype=torch.long)


@torch.inference_mode()
def top_k(model: torch.nn.Module, history: list[int], k: int, max_len: int,
          mask_history: bool = True) -> tuple[list[int], list[float]]:
    """The k best item ids and their scores for one user (padding never; history masked if asked)."""
    model.eval()
    device = module_device(model)
    items = model.item_repr().float()                                  # [N+1, D]
    user = model.user_repr(left_pad(history, max_len).to(device)).float()  # [1, D]
    scores = user @ items.T                                            # [1, N+1]
    scores[:, 0] = -math.inf
    if mask_history and history:
        scores[0, torch.tensor(sorted(set(history)), device=device)] = -math.inf
    vals, idx = top_k_scores(scores, k)
    keep = torch.isfinite(vals[0])
    return idx[0][keep].cpu().tolist(), vals[0][keep].cpu().tolist()
