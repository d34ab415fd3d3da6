"""Full-ranking evaluation shared by the train loop (validation) and the evaluate stage.

Ranks are 1-based and pessimistic: every other item whose score ties the target's (within a
relative float tolerance, so chunked and unchunked matmuls agree) is ranked above it, so a model
with constant scores gains nothing. Memory is bounded by `batch_users x item_chunk`.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import torch

from mmrec.io import module_device
from mmrec.metrics.formulas import metrics_from_ranks
from mmrec.metrics.params import MaskHistory, mask_mode

# Scores within this relative distance of the target's score count as ties (against the target).
TIE_RTOL = 1e-6

def rank_targets(user: torch.Tensor, items: torch.Tensor, targets: torch.Tensor,
                 history: torch.Tensor | None = None, *, mask_history: MaskHistory | bool = "none",
                 item_chunk: int = 65536, workspace: torch.Tensor | None = None) -> torch.Tensor:
    """1-based rank of each target among all real items (ids 1..N).

    user:    [U, D] user vectors.
    items:   [N+1, D] item vectors; row 0 (padding) is never ranked.
    targets: [U] target item ids (1..N).
    history: [U, H] item ids the user interacted with (0 = padding), removed from the ranking
             as `mask_history` says (see MaskHistory; repeats are counted by `count_repeats`).
    workspace: optional float32 buffer of at least U x min(item_chunk, N+1) elements on the
             same device, reused for the score blocks (saves re-faulting a fresh block per call).
    """
    if not (bool(torch.isfinite(user).all()) and bool(torch.isfinite(items).all())):
        raise ValueError("rank_targets: the model produced non-finite (NaN/inf) user or item "
                         "vectors; ranks would be meaningless")
    # Half-precision scores would tie far too often and could not hold exact counts.
    if user.dtype not in (torch.float32, torch.float64):
        user = user.float()
    if items.dtype != user.dtype:
        items = items.to(user.dtype)
    # Float row sums of 0/1 values are exact only below 2**24 per chunk.
    item_chunk = min(item_chunk, 1 << 24)
    n_rows = items.shape[0]
    targets = targets.long()
    if targets.numel() and (int(targets.min()) < 1 or int(targets.max()) >= n_rows):
        raise ValueError(f"rank_targets: target ids must lie in 1..{n_rows - 1} (0 is padding); "
                         f"got {int(targets.min())}..{int(targets.max())}")
    t_score = (user * items[targets]).sum(-1, keepdim=True)          # [U, 1]
    # Anything scoring at least `thr` is ranked above the target (pessimistic ties).
    thr = t_score - TIE_RTOL * t_score.abs().clamp_min(1.0)            # [U, 1]
    ahead = torch.zeros(user.shape[0], dtype=torch.long, device=user.device)
    mode = mask_mode(mask_history)
    hist = history.long() if (mode != "none" and history is not None) else None
    masked_target = torch.zeros(user.shape[0], dtype=torch.bool, device=user.device)
    if hist is not None:
        # History items other than the target leave the ranking (the target is never counted
        # against itself); under "all" a repeated target is itself masked: a miss.
        keep = (hist > 0) & (hist != targets[:, None])                 # [U, H]
        h_rows, h_cols = keep.nonzero(as_tuple=True)
        h_items = hist[h_rows, h_cols]                                  # [M]
        if mode == "all":
            masked_target = (hist == targets[:, None]).any(-1)          # [U]
    all_rows = torch.arange(user.shape[0], device=user.device)
    n_users = user.shape[0]
    width = min(item_chunk, n_rows)
    if workspace is None or workspace.numel() < n_users * width or workspace.dtype != user.dtype \
            or workspace.device != user.device:
        workspace = torch.empty(n_users * width, dtype=user.dtype, device=user.device)
    for start in range(0, n_rows, item_chunk):
        stop = min(start + item_chunk, n_rows)
        s = workspace[: n_users * (stop - start)].view(n_users, stop - start)   # [U, C]
        torch.mm(user, items[start:stop].T, out=s)
        # Excluded cells are set to -inf in place: cheaper than a [U, C] boolean mask.
        if start == 0:
            s[:, 0] = -math.inf                                         # padding column
        in_chunk = (targets >= start) & (targets < stop)
        s[all_rows[in_chunk], targets[in_chunk] - start] = -math.inf    # the target itself
        if hist is not None:
            sel = (h_items >= start) & (h_items < stop)
            s[h_rows[sel], h_items[sel] - start] = -math.inf
        # In place 0/1 then a float row sum: much faster than summing a fresh bool tensor, and
        # exact (counts stay far below 2**24).
        s.ge_(thr)
        ahead += s.sum(-1).long()
    return torch.where(masked_target, torch.full_like(ahead, n_rows), ahead + 1)


def count_repeats(targets: torch.Tensor, history: torch.Tensor) -> int:
    """How many targets already occur in their user's history."""
    return int((history.long() == targets.long()[:, None]).any(-1).sum())


@torch.inference_mode()
def rank_model(model: torch.nn.Module, histories: torch.Tensor, targets: torch.Tensor, *,
               mask_history: MaskHistory | bool = "none", mask_items: torch.Tensor | None = None,
               batch_users: int = 1024, item_chunk: int = 65536,
               device: torch.device | str | None = None,
               progress: Callable[[int], None] | None = None) -> torch.Tensor:
    """Ranks of `targets` for a model following mmrec.models.base.SeqRecModel.

    histories:  [U, L] left-padded model inputs (most recent last).
    mask_items: [U, H] items to mask (defaults to `histories`); pass the full history when the
                model input is a truncated window.

    Users are batched in order of history length (ranks come back in the input order): a
    user's vector does not depend on its batch-mates, and the models drop the padding columns
    a whole batch shares (mmrec.models.layers.fit_window), so real data's short histories (5
    items of 50 on Amazon Scientific) are not encoded at full width.
    """
    was_training = model.training
    model.eval()
    device = torch.device(device) if device is not None else module_device(model)
    items = model.item_repr().float()
    mask_items = histories if mask_items is None else mask_items
    workspace = torch.empty(min(batch_users, max(histories.shape[0], 1)) * min(item_chunk, items.shape[0]),
                            dtype=items.dtype, device=items.device)
    order = torch.argsort((histories > 0).sum(1), stable=True)        # [U] shortest first
    ranks = torch.zeros(histories.shape[0], dtype=torch.long)
    for sl in order.split(batch_users):
        h = histories[sl].to(device)
        u = model.user_repr(h).float()
        ranks[sl] = rank_targets(u, items, targets[sl].to(device), mask_items[sl].to(device),
                                 mask_history=mask_history, item_chunk=item_chunk,
                                 workspace=workspace).cpu()
        if progress is not None:
            progress(h.shape[0])
    model.train(was_training)
    return ranks


def evaluate_model(model: torch.nn.Module, histories: torch.Tensor, targets: torch.Tensor,
                   ks: Sequence[int] = (5, 10, 20), **kwargs) -> dict[str, float]:
    """Overall metrics of a model on one split (see `rank_model` for the arguments)."""
    return metrics_from_ranks(rank_model(model, histories, targets, **kwargs).numpy(), ks)
