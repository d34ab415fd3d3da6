"""SASRec with early (EF) and late (LF) fusion of ID, text and image (ODMT paper's baselines).

Frozen modality features pass through a feature transformation (FST) to the hidden size: linear
or MLP over the pooled vectors, or (`fst: transformer`, the ODMT paper's definition) a small
transformer over the token/patch states per modality whose summary token is the item vector.
- sasrec_ef: one item vector = mean of the ID embedding and the transformed modality vectors an
  item has; one SASRec over it; candidates are the same fused vectors.
- sasrec_lf: one branch per source (ID, text, image), each with its own item table and SASRec;
  the logit is the mean of the branch logits, realised as the dot product of concatenated branch
  vectors with the user side scaled by 1/branches (see mmrec.models.base).
Whatever modalities the dataset has are used (text only, image only, or both).
"""

from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from mmrec.models.base import ModelContext, SeqBatch, SeqRecModel
from mmrec.models.configs import FusionConfig
from mmrec.models.layers import (
    FeatureTransform,
    RecLossMixin,
    SeqTransformer,
    fit_window,
    id_path,
    init_weights,
    modalities_to_use,
    read_ids,
)
from mmrec.models.registry import MODELS
from mmrec.models.tokens import TokenFST, TokenStore


class _TokensFirst:
    """Fusion models need token states only with the transformer FST."""

    @classmethod
    def wants_tokens(cls, cfg: dict) -> bool:
        return cfg.get("fst") == "transformer"


class ModalityTables(nn.Module):
    """Per-modality FST over frozen vectors; rows of items lacking the modality are zero."""

    def __init__(self, ctx: ModelContext, mods: list[str], cfg: FusionConfig, owner: str = "fusion") -> None:
        super().__init__()
        self.mods = mods
        self.tokens = cfg.fst == "transformer"
        if self.tokens:
            self.fst = nn.ModuleDict({m: TokenFST(TokenStore.from_features(ctx.features[m], m, cfg.text_tokens,
                                                                           cfg.image_grid, owner),
                                                  cfg.hidden, cfg.fst_layers, cfg.fst_heads, cfg.dropout,
                                                  cfg.input_norm) for m in mods})
        else:
            self.fst = nn.ModuleDict({m: FeatureTransform(ctx.features[m].dim, cfg.hidden, cfg.fst, cfg.dropout)
                                      for m in mods})
        for m in mods:
            # Frozen inputs, rebuilt from the feature store at load time: not in the state_dict.
            if not self.tokens:
                self.register_buffer(f"vec_{m}", ctx.features[m].vector.float(), persistent=False)
            self.register_buffer(f"has_{m}", ctx.features[m].has_feature.bool(), persistent=False)

    def has(self, m: str) -> torch.Tensor:
        return getattr(self, f"has_{m}")                                # [N+1]

    def rows(self, m: str, ids: torch.Tensor) -> torch.Tensor:
        """Transformed vectors of items `ids` [K] -> [K, D] (zero where the item lacks m)."""
        out = self.fst[m](ids) if self.tokens else self.fst[m](getattr(self, f"vec_{m}")[ids])
        return out * self.has(m)[ids, None]


def _ids_for(batch_seq: Optional[torch.Tensor], n_rows: int, device: torch.device) -> torch.Tensor:
    """The item ids whose vectors a step needs: the batch's unique ids, or every row."""
    if batch_seq is None:
        return torch.arange(n_rows, device=device)
    return torch.unique(batch_seq)


def _scatter(ids: torch.Tensor, vecs: torch.Tensor, n_rows: int) -> torch.Tensor:
    """A [N+1, D] table holding `vecs` at `ids` and zeros elsewhere (only those rows are read)."""
    return vecs.new_zeros(n_rows, vecs.shape[1]).index_copy(0, ids, vecs)


@MODELS.register("sasrec_ef")
class SASRecEF(_TokensFirst, RecLossMixin, SeqRecModel):
    config_cls = FusionConfig

    def __init__(self, ctx: ModelContext, cfg: FusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mods = modalities_to_use("sasrec_ef", cfg.modalities, sorted(ctx.features))
        self.n_rows = ctx.n_items + 1
        self.item_emb = nn.Embedding(self.n_rows, cfg.hidden, padding_idx=0) if cfg.use_id else None
        self.tables = ModalityTables(ctx, self.mods, cfg, "sasrec_ef")
        self.inductive = id_path(ctx, cfg, cfg.hidden) if cfg.use_id else None
        self.encoder = SeqTransformer(cfg.hidden, cfg.layers, cfg.heads, cfg.dropout, cfg.max_len)
        init_weights(self)
        self.init_log_pop(ctx)

    def fused(self, ids: torch.Tensor) -> torch.Tensor:
        """Mean of the sources each item has: [K] ids -> [K, D]."""
        total = torch.zeros(ids.shape[0], self.cfg.hidden, device=ids.device)
        count = torch.zeros(ids.shape[0], 1, device=ids.device)
        if self.item_emb is not None:
            total = total + read_ids(self.inductive, self.item_emb, ids)
            count = count + 1
        for m in self.mods:
            total = total + self.tables.rows(m, ids)
            count = count + self.tables.has(m)[ids, None].float()
        return (total / count.clamp_min(1)) * (ids > 0)[:, None]

    def table(self, batch_seq: Optional[torch.Tensor] = None) -> torch.Tensor:
        ids = _ids_for(batch_seq, self.n_rows, self.tables.has(self.mods[0]).device)
        vecs = self.fused(ids)
        return vecs if batch_seq is None else _scatter(ids, vecs, self.n_rows)

    def item_repr(self) -> torch.Tensor:
        return self.scored(self.table())                               # [N+1, D]

    def encode(self, seq: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        return self.encoder(table[seq], seq > 0)                       # [B, L, D]

    def user_repr(self, history: torch.Tensor) -> torch.Tensor:
        h = fit_window(history, self.cfg.max_len)
        return self.scored(self.encode(h, self.table(h))[:, -1])

    def loss(self, batch: SeqBatch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        rows = batch.target_mask.nonzero(as_tuple=True)
        # Full softmax needs every item's vector; in-batch only the batch's own items.
        table = self.table(batch.seq if self.cfg.loss == "inbatch" else None)
        user = self.scored(self.encode(batch.inputs, table)[rows])
        loss = self.rec_loss(user, self.scored(table), batch, rows)
        return loss, {"loss_rec": float(loss.detach())}

    def retention_tables(self) -> dict[str, torch.Tensor]:
        ids = torch.arange(self.n_rows, device=self.tables.has(self.mods[0]).device)
        out = {"item": self.fused(ids)}
        if self.item_emb is not None:
            out["id"] = self.item_emb.weight
        out.update({m: self.tables.rows(m, ids) for m in self.mods})
        return out


@MODELS.register("sasrec_lf")
class SASRecLF(_TokensFirst, RecLossMixin, SeqRecModel):
    config_cls = FusionConfig

    def __init__(self, ctx: ModelContext, cfg: FusionConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mods = modalities_to_use("sasrec_lf", cfg.modalities, sorted(ctx.features))
        self.branches = (["id"] if cfg.use_id else []) + self.mods
        self.n_rows = ctx.n_items + 1
        self.item_emb = nn.Embedding(self.n_rows, cfg.hidden, padding_idx=0) if cfg.use_id else None
        self.tables = ModalityTables(ctx, self.mods, cfg, "sasrec_lf")
        self.inductive = id_path(ctx, cfg, cfg.hidden) if cfg.use_id else None
        self.encoders = nn.ModuleDict({b: SeqTransformer(cfg.hidden, cfg.layers, cfg.heads, cfg.dropout,
                                                         cfg.max_len) for b in self.branches})
        init_weights(self)
        self.init_log_pop(ctx)

    def branch_rows(self, b: str, ids: torch.Tensor) -> torch.Tensor:
        if b == "id":
            return read_ids(self.inductive, self.item_emb, ids)        # type: ignore[arg-type]
        return self.tables.rows(b, ids)

    def tables_for(self, batch_seq: Optional[torch.Tensor] = None) -> dict[str, torch.Tensor]:
        """Per-branch item tables [N+1, D] (only the batch's rows filled when batch_seq given)."""
        ids = _ids_for(batch_seq, self.n_rows, self.tables.has(self.mods[0]).device)
        out = {}
        for b in self.branches:
            vecs = self.branch_rows(b, ids)
            out[b] = vecs if batch_seq is None else _scatter(ids, vecs, self.n_rows)
        return out

    def item_repr(self) -> torch.Tensor:
        t = self.tables_for()
        return torch.cat([self.scored(t[b]) for b in self.branches], dim=-1)   # [N+1, n_branches*D]

    def encode(self, seq: torch.Tensor, tables: dict[str, torch.Tensor]) -> torch.Tensor:
        """[B, L, n_branches*D]: branch outputs concatenated, scaled by 1/branches so the dot
        product with concatenated item vectors is the mean of the branch logits."""
        valid = seq > 0
        outs = [self.scored(self.encoders[b](tables[b][seq], valid)) for b in self.branches]
        return torch.cat(outs, dim=-1) / len(self.branches)

    def user_repr(self, history: torch.Tensor) -> torch.Tensor:
        h = fit_window(history, self.cfg.max_len)
        return self.encode(h, self.tables_for(h))[:, -1]

    def loss(self, batch: SeqBatch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        rows = batch.target_mask.nonzero(as_tuple=True)
        tables = self.tables_for(batch.seq if self.cfg.loss == "inbatch" else None)
        user = self.encode(batch.inputs, tables)[rows]                 # [M, n_branches*D]
        items = torch.cat([self.scored(tables[b]) for b in self.branches], dim=-1)
        loss = self.rec_loss(user, items, batch, rows)
        return loss, {"loss_rec": float(loss.detach())}

    def retention_tables(self) -> dict[str, torch.Tensor]:
        t = self.tables_for()
        return {"item": torch.cat([t[b] for b in self.branches], dim=-1), **t}
