"""GRU4Rec (Hidasi et al., 2016) in its sequential form: ID embeddings -> GRU -> projection,
scored by dot product with the ID embeddings; every position predicts the next item."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from mmrec.models.base import ModelContext, SeqBatch, SeqRecModel
from mmrec.models.configs import GRU4RecConfig
from mmrec.models.layers import Dropout, RecLossMixin, fit_window, init_weights
from mmrec.models.registry import MODELS


class GRUEncoder(nn.Module):
    """Input dropout -> multi-layer GRU over the real items only -> Linear back to the embedding
    size. Left padding never enters the GRU (packed sequences), so the state entering a user's
    first item is the zero start state whatever the amount of padding."""

    def __init__(self, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.drop = Dropout(dropout)
        self.gru = nn.GRU(hidden, hidden, num_layers=layers, batch_first=True,
                          dropout=dropout if layers > 1 else 0.0)
        self.out = nn.Linear(hidden, hidden)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x [B, L, D], valid [B, L] (left padding: real items are a suffix) -> [B, L, D].

        Rows are shifted to start at position 0, packed by length, run, and shifted back; the
        outputs at padded positions are the projection of a zero state (never read).
        """
        B, L, D = x.shape
        lengths = valid.sum(1)                                         # [B]
        shift = (L - lengths)[:, None]                                 # left padding per row
        pos = torch.arange(L, device=x.device)[None, :]
        to_left = ((pos + shift) % L)[..., None].expand(B, L, D)       # row start -> position 0
        packed = pack_padded_sequence(self.drop(x.gather(1, to_left)), lengths.clamp_min(1).cpu(),
                                      batch_first=True, enforce_sorted=False)
        h, _ = self.gru(packed)
        h, _ = pad_packed_sequence(h, batch_first=True, total_length=L)  # [B, L, D], zeros after
        back = ((pos - shift) % L)[..., None].expand(B, L, h.shape[-1])
        return self.out(h.gather(1, back) * valid[..., None])


@MODELS.register("gru4rec")
class GRU4Rec(RecLossMixin, SeqRecModel):
    config_cls = GRU4RecConfig

    def __init__(self, ctx: ModelContext, cfg: GRU4RecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(ctx.n_items + 1, cfg.hidden, padding_idx=0)
        self.encoder = GRUEncoder(cfg.hidden, cfg.layers, cfg.dropout)
        init_weights(self)
        self.init_log_pop(ctx)

    def item_repr(self) -> torch.Tensor:
        return self.scored(self.item_emb.weight)                       # [N+1, D]

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.item_emb(seq), seq > 0)               # [B, L, D]

    def user_repr(self, history: torch.Tensor) -> torch.Tensor:
        return self.scored(self.encode(fit_window(history, self.cfg.max_len))[:, -1])

    def loss(self, batch: SeqBatch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        rows = batch.target_mask.nonzero(as_tuple=True)
        user = self.scored(self.encode(batch.inputs)[rows])            # [M, D]
        loss = self.rec_loss(user, self.item_repr(), batch, rows)
        return loss, {"loss_rec": float(loss.detach())}
