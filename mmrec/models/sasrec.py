"""SASRec (Kang & McAuley, 2018): ID embeddings -> causal transformer -> dot product with the
same ID embeddings. Every position of a training window predicts the next item."""

from __future__ import annotations

import torch
from torch import nn

from mmrec.models.base import ModelContext, SeqBatch, SeqRecModel
from mmrec.models.configs import SASRecConfig
from mmrec.models.layers import RecLossMixin, SeqTransformer, fit_window, init_weights
from mmrec.models.registry import MODELS


@MODELS.register("sasrec")
class SASRec(RecLossMixin, SeqRecModel):
    config_cls = SASRecConfig

    def __init__(self, ctx: ModelContext, cfg: SASRecConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.item_emb = nn.Embedding(ctx.n_items + 1, cfg.hidden, padding_idx=0)
        self.encoder = SeqTransformer(cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, cfg.max_len)
        init_weights(self)
        self.init_log_pop(ctx)

    def item_repr(self) -> torch.Tensor:
        return self.scored(self.item_emb.weight)                       # [N+1, D]

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Left-padded ids [B, L] -> hidden states [B, L, D]."""
        return self.encoder(self.item_emb(seq), seq > 0)

    def user_repr(self, history: torch.Tensor) -> torch.Tensor:
        return self.scored(self.encode(fit_window(history, self.cfg.max_len))[:, -1])   # [B, D]

    def loss(self, batch: SeqBatch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        rows = batch.target_mask.nonzero(as_tuple=True)                # (b [M], t [M])
        user = self.scored(self.encode(batch.inputs)[rows])            # [M, D]
        loss = self.rec_loss(user, self.item_repr(), batch, rows)
        return loss, {"loss_rec": float(loss.detach())}
