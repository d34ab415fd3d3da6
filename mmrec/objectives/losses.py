"""Recommendation losses shared by every model: full softmax and debiased in-batch softmax.

Public API (other models and the training loop use these; keep this list current):

    Candidates(ids, labels, exclude=None, log_q=None)   # ids [C], labels [M], exclude [M, C] bool, log_q [C]
    training_rows(batch: SeqBatch) -> (b [M], t [M])    # positions that are real examples
    full_candidates(targets [M], n_items) -> Candidates
        columns are items 1..N (no padding column); labels = targets - 1.
        Candidate vectors: `item_table[1:]`  ([N, D]).
    log_popularity(item_pop [N+1]) -> Tensor [N+1]      # log p(item), p = 0 guarded, pad -> 0
    inbatch_candidates(seq [B, S+1], rows, log_pop [N+1]) -> Candidates
        columns are every slot of the batch, flattened row-major (all ranks' slots, rank order,
        under DDP); label of row (b, t) = slot (b, t+1). Excluded: padding columns and every
        column whose item occurs anywhere in user b's slots, except the label column itself.
        Candidate vectors: `gather_candidates(seq.reshape(-1), item_vecs_of_slots)[1]`.
    inbatch_unique_candidates(seq, rows, log_pop) -> Candidates      (what rec_loss uses)
        the same softmax with one column per unique real item of the batch (per rank under DDP;
        ids sorted) and `log_mult` = log(copies in the batch): a column stands for its k slot
        copies, except on a row's label column, which stands for the label slot only. The CE is
        identical to the slot form and the [M, C] work shrinks by the duplicate + padding share.
        Candidate vectors: `gather_candidates(local_ids, item_vecs_of(local_ids))[1]` with
        `local_ids = torch.unique(seq[seq > 0])` (= cands.ids without DDP).
    row_log_mult(cands) -> [M, C] | None                # the per-row multiplicity offsets
    gather_candidates(ids [C_local], vecs [C_local, D]) -> (ids [C], vecs [C, D])
        all-gather across ranks (gradient flows back to each rank's own rows); identity when
        not distributed. Ranks may hold different C_local (padded with id 0, which is excluded).
    candidate_logits(user [M, D], cand_vecs [C, D], cands, temperature=1.0, multiplicity=True) -> [M, C] float32
        user @ cand.T / temperature - log_q (+ row_log_mult), excluded -> float32 min (after
        the fp32 cast). multiplicity=False leaves the offsets out (add them later with
        `add_log_mult`, e.g. after a KD temperature).
    add_log_mult(logits, cands) -> logits               # logits + row_log_mult, masks kept
    mask_excluded(logits [M, C], cands) -> [M, C]          # the masking step alone
    softmax_ce(logits [M, C], cands) -> scalar             # mean over rows
    rec_loss(kind, user, item_table, batch, rows, log_pop, temperature=1.0) -> scalar
        one call for `loss: full_ce | inbatch`: `user` [M, D] are the user vectors at `rows`,
        `item_table` [N+1, D] the candidate vectors of every item (row 0 padding). On a CPU
        `full_ce` runs as full_softmax_ce (blocked, same value and gradients).
    full_softmax_ce(user [M, D], items [N, D], labels [M]) -> scalar

Typical use in a model's `loss`:

    rows = training_rows(batch)                       # (b, t)
    user = seq_out[rows]                              # [M, D]
    loss = rec_loss(cfg.loss, user, item_table, batch, rows, self.log_pop)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Optional

import torch
import torch.nn.functional as F

from mmrec.data.sequences import SeqBatch


@dataclass
class Candidates:
    """The columns of one softmax and each row's label column.

    ids:     [C] item id of every column.
    labels:  [M] column index of each row's positive.
    exclude: [M, C] bool, True where a column must not compete in that row (or None).
    log_q:   [C] log sampling probability subtracted from the logits (or None).
    log_mult: [C] log of how many batch slots a column stands for (or None); not applied on a
             row's label column, which stands for the label slot alone.
    """

    ids: torch.Tensor
    labels: torch.Tensor
    exclude: Optional[torch.Tensor] = None
    log_q: Optional[torch.Tensor] = None
    log_mult: Optional[torch.Tensor] = None


def training_rows(batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor]:
    """(b [M], t [M]) of every position of `batch.inputs` that is a real training example."""
    b, t = batch.target_mask.nonzero(as_tuple=True)
    return b, t


def full_candidates(targets: torch.Tensor, n_items: int) -> Candidates:
    """Every real item is a column (ids 1..N); the label of target item j is column j-1."""
    if targets.numel() and int(targets.min()) < 1:
        raise ValueError("full_candidates: targets must be real items (>= 1), got padding")
    ids = torch.arange(1, n_items + 1, device=targets.device)
    return Candidates(ids=ids, labels=targets.long() - 1)


def log_popularity(item_pop: torch.Tensor) -> torch.Tensor:
    """[N+1] log p(item) from training counts; the padding row is 0 (p = 1, as the reference).

    Items with zero training count get the smallest positive count's probability instead of
    log 0 = -inf, which would otherwise turn their debiased logit into +inf.
    """
    pop = item_pop.double().clone()
    pop[0] = 0.0
    total = pop.sum()
    if total <= 0:
        raise ValueError("log_popularity: no training interactions (all counts are 0)")
    floor = pop[pop > 0].min()
    logp = torch.log(pop.clamp_min(floor) / total)
    logp[0] = 0.0
    return logp.float()


def _distributed() -> bool:
    return (torch.distributed.is_available() and torch.distributed.is_initialized()
            and torch.distributed.get_world_size() > 1)


class _AllGatherGrad(torch.autograd.Function):
    """all_gather whose backward sums every rank's gradient of this rank's slice (all_reduce),
    so negatives drawn from other ranks still train. Equal shapes on all ranks (caller pads)."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        dist = torch.distributed
        ctx.rank, ctx.world = dist.get_rank(), dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(ctx.world)]
        dist.all_gather(parts, x.contiguous())
        return tuple(parts)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> torch.Tensor:
        full = torch.stack([g.contiguous() for g in grads])             # [W, N, ...]
        torch.distributed.all_reduce(full)
        return full[ctx.rank]


def _gather_padded(x: torch.Tensor, with_grad: bool) -> torch.Tensor:
    """All-gather along dim 0 across ranks whose sizes may differ; rows padded with zeros."""
    dist = torch.distributed
    world = dist.get_world_size()
    n = torch.tensor([x.shape[0]], device=x.device)
    sizes = [torch.zeros_like(n) for _ in range(world)]
    dist.all_gather(sizes, n)
    sizes_i = [int(s) for s in sizes]
    pad = max(sizes_i) - x.shape[0]
    if pad:
        x = torch.cat([x, x.new_zeros((pad, *x.shape[1:]))])
    if with_grad:
        parts = list(_AllGatherGrad.apply(x))
    else:
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x)
    return torch.cat([p[:s] for p, s in zip(parts, sizes_i)])


def _rank_offset(n_local: int, device: torch.device) -> int:
    """Column offset of this rank's slots in the gathered candidate list."""
    if not _distributed():
        return 0
    dist = torch.distributed
    n = torch.tensor([n_local], device=device)
    sizes = [torch.zeros_like(n) for _ in range(dist.get_world_size())]
    dist.all_gather(sizes, n)
    return int(sum(int(s) for s in sizes[: dist.get_rank()]))


def gather_candidates(ids: torch.Tensor, vecs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """All ranks' candidate ids [C] and vectors [C, D], in rank order (identity without DDP).

    The vectors keep their gradient (torch.distributed.nn), so every rank's negatives train.
    """
    if not _distributed():
        return ids, vecs
    return _gather_padded(ids, with_grad=False), _gather_padded(vecs, with_grad=True)


_SEEN_TABLE_LIMIT = 64_000_000  # B x (N+1) booleans; above it use a sort-based isin


def _seen(seq: torch.Tensor, ids: torch.Tensor, n_ids: int) -> torch.Tensor:
    """[B, C] bool: column item ids[c] occurs in user b's slots seq[b] (vectorised, no loops).

    A [B, N+1] scatter table when it is small enough, else one isin over (user, item) keys.
    """
    B = seq.shape[0]
    if B * n_ids <= _SEEN_TABLE_LIMIT:
        table = torch.zeros(B, n_ids, dtype=torch.bool, device=seq.device)
        table.scatter_(1, seq, True)                                   # [B, N+1]
        return table[:, ids]
    users = torch.arange(B, device=seq.device)
    own_keys = (users[:, None] * n_ids + seq).reshape(-1)          # [B*(S+1)]
    return torch.isin(users[:, None] * n_ids + ids[None, :], own_keys)


def inbatch_candidates(seq: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor],
                       log_pop: torch.Tensor) -> Candidates:
    """Debiased in-batch candidates: every slot of the (global) batch is a column.

    seq: [B, S+1] left-padded slot ids; rows: (b [M], t [M]) the example positions (input t,
    target t+1); log_pop: [N+1] log p(item) (see `log_popularity`).
    """
    b, t = rows
    n_slots_row = seq.shape[1]
    local_ids = seq.reshape(-1)                                    # [B*(S+1)]
    ids = _gather_padded(local_ids, with_grad=False) if _distributed() else local_ids  # [C]
    offset = _rank_offset(local_ids.shape[0], seq.device)
    labels = offset + b * n_slots_row + t + 1                      # [M]

    seen = _seen(seq, ids, int(log_pop.shape[0]))                  # [B, C]
    exclude = seen[b] | (ids == 0)[None, :]                        # [M, C]
    exclude[torch.arange(b.shape[0], device=seq.device), labels] = False
    log_q = log_pop.to(seq.device)[ids]                            # [C]
    return Candidates(ids=ids, labels=labels, exclude=exclude, log_q=log_q)


def inbatch_unique_candidates(seq: torch.Tensor, rows: tuple[torch.Tensor, torch.Tensor],
                              log_pop: torch.Tensor) -> Candidates:
    """The in-batch softmax of `inbatch_candidates` with one column per unique real item.

    Column c (item j, k_j slot copies on this rank) gets logit s + log k_j, which sums its k_j
    identical slot columns; every copy of a row's label item except the label slot is a false
    negative, so the label column keeps multiplicity 1. Same CE as the slot form, smaller [M, C].
    """
    b, t = rows
    flat = seq.reshape(-1)
    local_ids, counts = torch.unique(flat[flat > 0], return_counts=True)   # [U] sorted, [U]
    targets = seq[b, t + 1]                                                # [M]
    local_labels = torch.searchsorted(local_ids, targets)                  # [M]
    local_mult = counts.float().log()
    if _distributed():
        offset = _rank_offset(local_ids.shape[0], seq.device)
        ids = _gather_padded(local_ids, with_grad=False)
        log_mult = _gather_padded(local_mult, with_grad=False)
    else:
        offset, ids, log_mult = 0, local_ids, local_mult
    labels = offset + local_labels
    seen = _seen(seq, ids, int(log_pop.shape[0]))                          # [B, C]
    exclude = seen[b] | (ids == 0)[None, :]                                # [M, C] (0: DDP padding)
    exclude[torch.arange(b.shape[0], device=seq.device), labels] = False
    return Candidates(ids=ids, labels=labels, exclude=exclude,
                      log_q=log_pop.to(seq.device)[ids], log_mult=log_mult)


def row_log_mult(cands: Candidates) -> Optional[torch.Tensor]:
    """[M, C] multiplicity offsets: log_mult on every column, 0 on each row's label column."""
    if cands.log_mult is None:
        return None
    M = cands.labels.shape[0]
    out = cands.log_mult.float()[None, :].expand(M, -1).clone()
    out[torch.arange(M, device=out.device), cands.labels] = 0.0
    return out


def add_log_mult(logits: torch.Tensor, cands: Candidates,
                 offsets: Optional[torch.Tensor] = None) -> torch.Tensor:
    """logits + the multiplicity offsets (`offsets` if precomputed), excluded entries kept at the
    float32 minimum."""
    offsets = row_log_mult(cands) if offsets is None else offsets
    if offsets is None:
        return logits
    return mask_excluded(logits + offsets, cands)


def mask_excluded(logits: torch.Tensor, cands: Candidates) -> torch.Tensor:
    """Cast to float32 and set excluded entries to the float32 minimum (finite, fp16-safe)."""
    logits = logits.float()
    if cands.exclude is None:
        return logits
    return logits.masked_fill(cands.exclude, torch.finfo(torch.float32).min)


def candidate_logits(user: torch.Tensor, cand_vecs: torch.Tensor, cands: Candidates,
                     temperature: float = 1.0, multiplicity: bool = True) -> torch.Tensor:
    """[M, C] float32 logits user·cand / temperature - log_q with excluded entries masked,
    plus the columns' multiplicity offsets (`row_log_mult`) unless `multiplicity` is False.

    The logQ correction is applied to the tempered logit (it corrects the sampling of the
    softmax's columns, whatever scale the scores have): dividing it by a temperature of 0.07
    would multiply the popularity correction by 14 (`loss_norm: cosine`).

    The matmul may run in half precision under autocast; the debiasing, the division by a
    small temperature and the masking happen in float32, so nothing overflows.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    logits = (user @ cand_vecs.T).float() / temperature            # [M, C]
    if cands.log_q is not None:
        logits = logits - cands.log_q.float()[None, :]
    if multiplicity and cands.log_mult is not None:
        logits = logits + row_log_mult(cands)
    return mask_excluded(logits, cands)


def softmax_ce(logits: torch.Tensor, cands: Candidates) -> torch.Tensor:
    """Mean cross-entropy of each row's label column (float32)."""
    return F.cross_entropy(logits.float(), cands.labels)


def rec_loss(kind: Literal["full_ce", "inbatch"], user: torch.Tensor, item_table: torch.Tensor,
             batch: SeqBatch, rows: tuple[torch.Tensor, torch.Tensor],
             log_pop: Optional[torch.Tensor] = None, temperature: float = 1.0) -> torch.Tensor:
    """The recommendation loss of `user` [M, D] (user vectors at `rows`) against `item_table`
    [N+1, D] with candidate set `kind` (`full_ce`: all items; `inbatch`: debiased in-batch)."""
    if kind == "full_ce" and user.device.type == "cpu":
        # Same loss, computed in row blocks that stay in cache (see FullSoftmaxCE): on a CPU the
        # [M, N] logits and their gradient are the whole step otherwise.
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        labels = full_candidates(batch.targets[rows], item_table.shape[0] - 1).labels
        return full_softmax_ce(user / temperature, item_table[1:], labels)
    cands, vecs = make_candidates(kind, item_table, batch, rows, log_pop)
    return softmax_ce(candidate_logits(user, vecs, cands, temperature), cands)


#: logits per block of FullSoftmaxCE: 2M float32 = 8 MB, about what a core's share of cache holds.
CE_BLOCK_ENTRIES = 1 << 21


class FullSoftmaxCE(torch.autograd.Function):
    """Mean softmax cross-entropy of `user @ items.T` [M, N] with `labels` [M], never holding
    the [M, N] logits: forward keeps each row's log-sum-exp, backward recomputes one block of
    rows at a time and accumulates both gradients. One extra matmul buys not writing and
    re-reading 3 x M x N floats (logits, log-softmax, gradient); measured 3x faster on CPU at
    both the Scientific and the Arts shapes (BENCHMARKS.md), with memory O(block x N)."""

    @staticmethod
    def forward(ctx: Any, user: torch.Tensor, items: torch.Tensor, labels: torch.Tensor,
                block: int) -> torch.Tensor:
        lse = torch.empty(user.shape[0], dtype=torch.float32, device=user.device)   # [M]
        for s in range(0, user.shape[0], block):
            lse[s:s + block] = torch.logsumexp(user[s:s + block] @ items.T, dim=1)
        target = (user * items[labels]).sum(1)                                       # [M]
        ctx.save_for_backward(user, items, labels, lse)
        ctx.block = block
        return (lse - target).mean()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
        user, items, labels, lse = ctx.saved_tensors
        scale = grad / user.shape[0]
        g_user = torch.empty_like(user)
        g_items = torch.zeros_like(items)
        for s in range(0, user.shape[0], ctx.block):
            u = user[s:s + ctx.block]                                               # [b, D]
            p = torch.addmm(-lse[s:s + ctx.block, None], u, items.T).exp_().mul_(scale)   # softmax [b, N]
            g_user[s:s + ctx.block] = p @ items
            g_items.addmm_(p.T, u)
        # The -1 at each row's label column of (softmax - onehot), applied outside the blocks.
        g_user -= scale * items[labels]
        g_items.index_add_(0, labels, -scale * user)
        return g_user, g_items, None, None


def full_softmax_ce(user: torch.Tensor, items: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE of `user` [M, D] against every row of `items` [N, D] (labels [M] index items),
    equal to `F.cross_entropy(user @ items.T, labels)` but blocked over rows (FullSoftmaxCE)."""
    block = max(1, CE_BLOCK_ENTRIES // max(items.shape[0], 1))
    return FullSoftmaxCE.apply(user.float(), items.float(), labels, block)


def make_candidates(kind: Literal["full_ce", "inbatch"], item_table: torch.Tensor,
                    batch: SeqBatch, rows: tuple[torch.Tensor, torch.Tensor],
                    log_pop: Optional[torch.Tensor] = None) -> tuple[Candidates, torch.Tensor]:
    """(Candidates, candidate vectors [C, D]) for loss `kind`; see `rec_loss`."""
    if kind == "full_ce":
        targets = batch.targets[rows]
        return full_candidates(targets, item_table.shape[0] - 1), item_table[1:]
    if kind == "inbatch":
        if log_pop is None:
            raise ValueError("loss 'inbatch' needs log_pop (log_popularity(ctx.item_pop))")
        cands = inbatch_unique_candidates(batch.seq, rows, log_pop)
        flat = batch.seq.reshape(-1)
        local_ids = torch.unique(flat[flat > 0])
        _, vecs = gather_candidates(local_ids, item_table[local_ids])
        return cands, vecs
    raise ValueError(f"unknown loss {kind!r}; known: full_ce, inbatch")
