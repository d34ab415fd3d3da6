"""Building blocks shared by the sequential models: config base, causal transformer, feature
transforms, initialisation, and the "last position" readout."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.data.sequences import trim_padding
from mmrec.models.configs import SeqModelConfig  # noqa: F401  (re-exported)


def dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Inverted dropout (as F.dropout: each element kept with probability 1 - p, scaled by
    1 / (1 - p)), the mask drawn from uniform numbers on the CPU. torch's CPU dropout draws it with
    bernoulli_, 2-3x slower than `torch.rand`; it was a fifth of an ODMT training step on Amazon
    Scientific (BENCHMARKS.md). CUDA keeps torch's fused kernel."""
    if not training or p == 0.0:
        return x
    if x.device.type != "cpu" or p >= 1.0:
        return F.dropout(x, p, True)
    keep = (torch.rand(x.shape, device=x.device) >= p).to(x.dtype).mul_(1.0 / (1.0 - p))
    return x * keep


class Dropout(nn.Dropout):
    """nn.Dropout drawing its mask as `dropout` does (same module, state and repr)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p, self.training)


def attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, mask: torch.Tensor, p: float,
           training: bool) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) where `mask`, else -inf) with attention dropout p, times v:
    q [B, H, Lq, Dh], k/v [B, H, Lk, Dh], mask [B, 1, Lq, Lk] bool -> [B, H, Lq, Dh].

    scaled_dot_product_attention, except for dropout on the CPU, where its math path draws the
    mask with the slow bernoulli_: there the same computation is spelled out with `dropout`."""
    if not training or p == 0.0 or q.device.type != "cpu":
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p if training else 0.0)
    att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))   # [B, H, Lq, Lk]
    att = att.masked_fill(~mask, -math.inf).softmax(-1)
    return dropout(att, p, True) @ v


class CausalSelfAttention(nn.Module):
    """Multi-head self-attention; `mask` [B, 1, L, L] bool is True where attention is allowed."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if hidden % heads:
            raise ValueError(f"hidden ({hidden}) must be divisible by heads ({heads})")
        self.heads = heads
        self.qkv = nn.Linear(hidden, 3 * hidden)
        self.proj = nn.Linear(hidden, hidden)
        self.dropout = dropout

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, D = x.shape
        q, k, v = self.qkv(x).split(D, dim=-1)                         # 3 x [B, L, D]
        shape = (B, L, self.heads, D // self.heads)
        q, k, v = (t.view(shape).transpose(1, 2) for t in (q, k, v))   # [B, H, L, Dh]
        y = attend(q, k, v, mask, self.dropout, self.training)
        return self.proj(y.transpose(1, 2).reshape(B, L, D))


class Block(nn.Module):
    """Pre-LayerNorm transformer block (attention + GELU MLP, both residual)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(hidden)
        self.attn = CausalSelfAttention(hidden, heads, dropout)
        self.norm2 = nn.LayerNorm(hidden)
        self.mlp = nn.Sequential(nn.Linear(hidden, 4 * hidden), nn.GELU(), nn.Linear(4 * hidden, hidden))
        self.drop = Dropout(dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = x + self.drop(self.attn(self.norm1(x), mask))
        return x + self.drop(self.mlp(self.norm2(x)))


def causal_padding_mask(valid: torch.Tensor) -> torch.Tensor:
    """[B, 1, L, L] bool attention mask from `valid` [B, L]: causal, padded keys hidden.

    Each position may always attend to itself, so fully padded (left) positions never produce
    an all-masked softmax row (NaN); their outputs are ignored anyway.
    """
    L = valid.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(L, dtype=torch.bool, device=valid.device)
    return ((causal & valid[:, None, :]) | eye)[:, None]               # [B, 1, L, L]


class SeqTransformer(nn.Module):
    """SASRec's sequence encoder: learned positions, causal pre-LN blocks, final LayerNorm.

    Inputs are left-padded, so absolute position L-1 is always the most recent item.
    """

    def __init__(self, hidden: int, layers: int, heads: int, dropout: float, max_len: int) -> None:
        super().__init__()
        self.max_len = max_len
        self.pos = nn.Embedding(max_len, hidden)
        self.drop = Dropout(dropout)
        self.blocks = nn.ModuleList(Block(hidden, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x [B, L, D] item embeddings (L <= max_len), valid [B, L] bool -> [B, L, D]."""
        L = x.shape[1]
        pos = self.pos.weight[self.max_len - L:]                       # right-aligned [L, D]
        h = self.drop(x + pos) * valid[..., None]
        mask = causal_padding_mask(valid)
        for block in self.blocks:
            h = block(h, mask)
        return self.norm(h)


class FeatureTransform(nn.Module):
    """Feature transformation (FST) of frozen modality vectors [.., d_in] -> [.., hidden].

    linear: W x + b (the ODMT paper's projection); mlp: LayerNorm, Linear, GELU, Linear.
    """

    def __init__(self, d_in: int, hidden: int, kind: Literal["linear", "mlp"], dropout: float) -> None:
        super().__init__()
        if kind == "linear":
            self.net = nn.Linear(d_in, hidden)
        elif kind == "mlp":
            self.net = nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, 2 * hidden), nn.GELU(),
                                     Dropout(dropout), nn.Linear(2 * hidden, hidden))
        else:
            raise ValueError(f"unknown feature transform {kind!r}; known: linear, mlp")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def init_weights(module: nn.Module, std: float = 0.02) -> None:
    """N(0, std) for Linear/Embedding weights, zero biases, unit LayerNorms; padding row 0 zero."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, 0.0, std)
            if m.padding_idx is not None:
                with torch.no_grad():
                    m.weight[m.padding_idx].zero_()
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def unit(x: torch.Tensor, on: bool) -> torch.Tensor:
    """`x` L2-normalised along the last dim when `on` (`loss_norm: cosine`); zero rows stay zero."""
    return F.normalize(x, dim=-1) if on else x


class InductiveId(nn.Module):
    """The ID rows a content model reads, with an inductive path for items the ID table has not
    learned: items without a training interaction (cold) get one learned [MASK] vector instead
    of their untrained row (`cold_id: mask`), and in training each forward pass also masks the
    ID of a random `id_dropout` share of all items (DropoutNet), so the content path learns to
    carry an item alone. Built only when one of the two is on (the default model is unchanged).
    """

    def __init__(self, item_pop: torch.Tensor, dim: int, cold: bool, dropout: float) -> None:
        super().__init__()
        self.dropout = float(dropout)
        self.mask_emb = nn.Parameter(torch.randn(dim) * 0.02)          # [D]
        is_cold = (item_pop.detach().cpu() == 0) if cold else torch.zeros(item_pop.shape[0], dtype=torch.bool)
        is_cold[0] = False                                              # padding stays padding
        self.register_buffer("cold", is_cold, persistent=False)         # [N+1]

    @staticmethod
    def wanted(cfg) -> bool:
        return getattr(cfg, "cold_id", "table") == "mask" or getattr(cfg, "id_dropout", 0.0) > 0

    def masked(self, ids: torch.Tensor) -> torch.Tensor:
        """[...] bool: which of `ids` read the [MASK] vector in this forward pass."""
        hide = self.cold.to(ids.device)
        if self.training and self.dropout > 0:
            hide = hide | (torch.rand(hide.shape[0], device=ids.device) < self.dropout)
        return hide[ids] & (ids > 0)

    def forward(self, ids: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """ID rows [..., D] of item ids [...], the masked ones replaced by the [MASK] vector."""
        return torch.where(self.masked(ids)[..., None], self.mask_emb.to(rows.dtype), rows)

    def table(self, weight: torch.Tensor) -> torch.Tensor:
        """The whole ID table [N+1, D] as the models score with it."""
        return self(torch.arange(weight.shape[0], device=weight.device), weight)


def id_path(ctx, cfg, dim: int) -> "InductiveId | None":
    """The InductiveId a model with settings `cfg` needs, or None (the ID rows as they are)."""
    if not InductiveId.wanted(cfg):
        return None
    return InductiveId(ctx.item_pop, dim, cfg.cold_id == "mask", cfg.id_dropout)


def read_ids(path: "InductiveId | None", emb: nn.Embedding, ids: torch.Tensor) -> torch.Tensor:
    """emb(ids) [..., D] through the inductive path when the model has one."""
    rows = emb(ids)
    return rows if path is None else path(ids, rows)


def fit_window(history: torch.Tensor, max_len: int) -> torch.Tensor:
    """The last `max_len` positions of left-padded histories [B, L], without the leading columns
    that are padding in every row: [B, L'], 1 <= L' <= max_len. Every model encodes left-padded,
    right-aligned, padding-masked windows, so a real position's output does not depend on how
    much padding precedes it; users of a batch with short histories cost only what they have
    (mmrec.metrics.ranking batches users by history length)."""
    window = history[:, max(history.shape[1] - max_len, 0):]
    if window.shape[1] == 0:
        return F.pad(window, (1, 0))
    return trim_padding(window, min_width=1)


def modalities_to_use(model_name: str, wanted: list[str] | None, present: list[str],
                      needed: int = 1) -> list[str]:
    """The modalities a multimodal model will use: `wanted` (None = all present), in a fixed
    order. A wanted modality that the dataset lacks, or fewer than `needed` usable ones, is a
    clear error naming the model, raised before training starts."""
    order = ["text", "image"]
    if wanted is None:
        use = [m for m in order if m in present]
    else:
        missing = [m for m in wanted if m not in present]
        if missing:
            raise ValueError(f"model {model_name!r} needs modality {', '.join(missing)} but the dataset "
                             f"has only: {', '.join(present) or 'no modality features'}")
        use = [m for m in order if m in wanted]
    if len(use) < needed:
        raise ValueError(f"model {model_name!r} needs at least {needed} modality (text or image) but "
                         f"none is present (features found: {', '.join(present) or 'none'})")
    return use


class RecLossMixin:
    """`rec_loss` over a model's own candidate table, with the model's loss kind and temperature.

    The host sets `self.cfg` (a SeqModelConfig) and calls `init_log_pop(ctx)` in __init__.
    """

    cfg: SeqModelConfig

    def init_log_pop(self, ctx) -> None:
        from mmrec.objectives.losses import log_popularity

        # Only the in-batch loss needs popularity; not persisted (rebuilt from the context).
        log_pop = log_popularity(ctx.item_pop) if self.cfg.loss == "inbatch" else torch.zeros(0)
        self.register_buffer("log_pop", log_pop, persistent=False)  # type: ignore[attr-defined]

    def scored(self, x: torch.Tensor) -> torch.Tensor:
        """Vectors as they enter a score: L2-normalised with `loss_norm: cosine` (apply per branch)."""
        return unit(x, self.cfg.loss_norm == "cosine")

    def rec_loss(self, user: torch.Tensor, item_table: torch.Tensor, batch, rows) -> torch.Tensor:
        """user [M, D] at `rows` of `batch`, item_table [N+1, D] -> scalar loss."""
        from mmrec.objectives.losses import rec_loss

        return rec_loss(self.cfg.loss, user, item_table, batch, rows,
                        self.log_pop if self.cfg.loss == "inbatch" else None,  # type: ignore[attr-defined]
                        self.cfg.temperature)
