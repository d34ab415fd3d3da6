"""KDSR (Hu et al., ECIR 2024): a sequential backbone whose item embedding fuses the ID embedding
with trainable modality tables initialised from the teacher's denoised features, trained with
correlation distillation over the unique item pairs inside each training sequence:

    L = L_rec + sum_m [ w_skd(m) * SKD_m + w_ckd(m) * CKD_m ]

SKD_m: the student's correlation r_hat_ij (teacher's correlation function, on two linear
projections of the supervised item vectors e) regresses on the teacher's r_ij. CKD_m: a 2-layer
MLP on |e_i - e_j| classifies the teacher's dissected-correlation code c_ij. The modality tables
may learn at a smaller rate (asynchronous learning). Every component is a params switch.

Where the supervision sits (`kd_on`): the released code supervises the raw modality tables
(`table`). Those tables start as the teacher's own vectors, so SKD's target is met at step 0,
and a free projection and the gate sit between them and the scores, where forgetting happens.
By default (`fused`) e is the gated item vector the recommender scores with (ID + projected
tables): at initialisation it mixes a random ID row and a random projection, so there is
something to supervise, and what is supervised is what ranks. `modality` supervises each
projected table before the gate. The tables still start from the teacher (the paper's
initialisation); with `fused`/`modality` that no longer makes the target trivially met (on a
synthetic batch the reference-form SKD starts near 0 on the raw tables without projections and
at ~0.8 on the fused vectors). `table_init: random` starts the tables at N(0, 0.02) instead, so
that the teacher's correlations reach the model only through SKD/CKD.
"""

from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from mmrec.models.base import ModelContext, SeqBatch, SeqRecModel
from mmrec.models.configs import KDSRConfig
from mmrec.models.gru4rec import GRUEncoder
from mmrec.models.layers import (
    RecLossMixin,
    SeqTransformer,
    fit_window,
    id_path,
    init_weights,
    modalities_to_use,
    read_ids,
)
from mmrec.models.registry import MODELS
from mmrec.objectives.correlation_kd import (
    IGNORE_CODE,
    async_lr_scale,
    ckd_loss,
    code_accuracy,
    kd_weights,
    pair_correlation,
    sequence_pairs,
    skd_loss,
    skd_weight,
)
from mmrec.objectives.gradients import relative_grad_norms

MODALITY_GROUP = "modality_tables"


class PairHeads(nn.Module):
    """One modality's student heads: SKD projections P2(P1(e)) and the CKD code classifier.
    Without `projection` SKD compares the supervised vectors themselves (no free linear map
    that could absorb the mismatch instead of the vectors)."""

    def __init__(self, dim: int, n_codes: int, projection: bool = True) -> None:
        super().__init__()
        self.p1 = nn.Linear(dim, dim) if projection else None
        self.p2 = nn.Linear(dim, dim) if projection else None
        self.code_mlp = nn.Sequential(nn.Linear(dim, dim), nn.ReLU(), nn.Linear(dim, n_codes))

    def project(self, e: torch.Tensor) -> torch.Tensor:
        if self.p1 is None or self.p2 is None:
            return e
        return self.p2(self.p1(e))                                     # no activation (reference)

    def code_logits(self, ei: torch.Tensor, ej: torch.Tensor) -> torch.Tensor:
        return self.code_mlp((ei - ej).abs())                          # [P, K]


@MODELS.register("kdsr")
class KDSR(RecLossMixin, SeqRecModel):
    config_cls = KDSRConfig
    needs_teacher = True

    def __init__(self, ctx: ModelContext, cfg: KDSRConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.mods = modalities_to_use("kdsr", cfg.modalities, sorted(ctx.teachers))
        self.teachers = {m: ctx.teachers[m] for m in self.mods}      # not modules: never trained
        self.corr_kind = {m: str(getattr(ctx.teachers[m], "correlation", "cosine")) for m in self.mods}
        D = cfg.hidden
        self.item_emb = nn.Embedding(ctx.n_items + 1, D, padding_idx=0)
        self.inductive = id_path(ctx, cfg, D)
        dims = {m: int(ctx.teachers[m].denoised.shape[1]) for m in self.mods}
        self.mod_emb = nn.ModuleDict({m: nn.Embedding(ctx.n_items + 1, dims[m], padding_idx=0) for m in self.mods})
        self.mod_proj = nn.ModuleDict({m: nn.Linear(dims[m], D) for m in self.mods})
        head_dim = {m: dims[m] if cfg.kd_on == "table" else D for m in self.mods}
        self.heads = nn.ModuleDict({m: PairHeads(head_dim[m], int(ctx.teachers[m].n_codes), cfg.skd_projection)
                                    for m in self.mods})
        self.gate = nn.Sequential(nn.Linear(D, D), nn.ReLU(), nn.Linear(D, 1)) if cfg.fusion == "gate" else None
        if cfg.backbone == "sasrec":
            self.encoder: nn.Module = SeqTransformer(D, cfg.layers, cfg.heads, cfg.dropout, cfg.max_len)
        else:
            self.encoder = GRUEncoder(D, cfg.gru_layers, cfg.dropout)
        init_weights(self)
        with torch.no_grad():
            for m in self.mods:
                table = ctx.teachers[m].denoised.float().to(self.mod_emb[m].weight.device)
                if table.shape[0] != ctx.n_items + 1:
                    raise ValueError(f"kdsr: the {m} teacher covers {table.shape[0] - 1} items, "
                                     f"items.parquet has {ctx.n_items}; re-run the teacher stage")
                if cfg.table_init == "teacher":
                    self.mod_emb[m].weight.copy_(table)
                self.mod_emb[m].weight[0].zero_()
        self.weights = kd_weights(skd_weight(cfg.skd_form, cfg.lambda_skd), cfg.lambda_ckd,
                                  cfg.reference_weight_bug)
        self.init_log_pop(ctx)

    # item vectors -----------------------------------------------------------------------------
    def fused(self, ids: torch.Tensor) -> torch.Tensor:
        """ID embedding fused with the projected modality tables: ids [...] -> [..., D]."""
        parts = [read_ids(self.inductive, self.item_emb, ids)] + [self.mod_proj[m](self.mod_emb[m](ids))
                                                                  for m in self.mods]
        stack = torch.stack(parts, dim=-2)                             # [..., S, D]
        if self.gate is None:
            out = stack.mean(-2)
        else:
            w = torch.softmax(self.gate(stack), dim=-2)                # [..., S, 1]
            out = (w * stack).sum(-2)
        return out * (ids > 0)[..., None]

    def item_repr(self, table: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[N+1, D] candidate vectors; `table`: this step's fused table when already built."""
        ids = torch.arange(self.item_emb.num_embeddings, device=self.item_emb.weight.device)
        if self.cfg.candidates == "id":
            return self.scored(read_ids(self.inductive, self.item_emb, ids))
        return self.scored(self.fused(ids) if table is None else table)

    def encode(self, seq: torch.Tensor, table: Optional[torch.Tensor] = None) -> torch.Tensor:
        """[B, L, D] from the fused vectors of seq [B, L] (rows of `table` [N+1, D] if given)."""
        # the encoder applies the (single) input dropout to the fused vectors
        return self.encoder(self.fused(seq) if table is None else table[seq], seq > 0)

    def user_repr(self, history: torch.Tensor) -> torch.Tensor:
        return self.scored(self.encode(fit_window(history, self.cfg.max_len))[:, -1])

    # losses -----------------------------------------------------------------------------------
    def supervised(self, m: str, ids: torch.Tensor) -> torch.Tensor:
        """The item vectors SKD/CKD of modality m act on (`kd_on`): ids [U] -> [U, dim]."""
        if self.cfg.kd_on == "table":
            return self.mod_emb[m](ids)
        if self.cfg.kd_on == "modality":
            return self.mod_proj[m](self.mod_emb[m](ids))
        return self.fused(ids)

    def kd_terms(self, seq: torch.Tensor, table: Optional[torch.Tensor] = None
                 ) -> dict[str, dict[str, torch.Tensor]]:
        """{"skd"|"ckd": {modality: loss}} over the unique item pairs of each row of seq [B, L],
        plus "acc"/"chance": {modality: CKD head accuracy / majority-code share} (detached).
        `table`: this step's fused table [N+1, D] when already built."""
        b, i, j = sequence_pairs(seq, self.cfg.include_diagonal)       # [P] each
        uniq = torch.unique(seq)                                       # [U] sorted
        pi, pj = torch.searchsorted(uniq, i), torch.searchsorted(uniq, j)
        fused = None
        if self.cfg.kd_on == "fused":
            fused = self.fused(uniq) if table is None else table[uniq]
        out: dict[str, dict[str, torch.Tensor]] = {"skd": {}, "ckd": {}, "acc": {}, "chance": {}}
        for m in self.mods:
            r, c = self.teachers[m].pair_targets(i, j)
            r, c = r.to(seq.device), c.to(seq.device)
            ok = c != IGNORE_CODE                                      # both items have modality m
            e = fused if fused is not None else self.supervised(m, uniq)   # [U, dim]
            ei, ej = e[pi], e[pj]                                      # [P, dim]
            if self.cfg.skd:
                r_hat = pair_correlation(self.heads[m].project(ei[ok]), self.heads[m].project(ej[ok]),
                                         self.corr_kind[m])
                out["skd"][m] = skd_loss(r_hat.float(), r[ok].float(), self.cfg.tau, self.cfg.skd_form,
                                         rows=b[ok], n_rows=seq.shape[0])
            if self.cfg.ckd:
                logits = self.heads[m].code_logits(ei, ej)             # [P, K]
                out["ckd"][m] = ckd_loss(logits, c)
                acc, chance = code_accuracy(logits.detach(), c)
                out["acc"][m], out["chance"][m] = torch.tensor(acc), torch.tensor(chance)
        return out

    def loss_terms(self, batch: SeqBatch) -> tuple[torch.Tensor, dict[str, dict[str, torch.Tensor]]]:
        """(recommendation loss, `kd_terms` of the batch's inputs, empty without SKD and CKD)."""
        rows = batch.target_mask.nonzero(as_tuple=True)
        # One fused table per step, read by the inputs, the candidates and SKD/CKD alike (so an
        # item whose ID `id_dropout` masks is masked everywhere in this step).
        ids = torch.arange(self.item_emb.num_embeddings, device=self.item_emb.weight.device)
        table = self.fused(ids)                                        # [N+1, D]
        user = self.scored(self.encode(batch.inputs, table)[rows])     # [M, D]
        rec = self.rec_loss(user, self.item_repr(table), batch, rows)
        kd = self.kd_terms(batch.inputs, table) if (self.cfg.skd or self.cfg.ckd) else {}
        return rec, kd

    def loss(self, batch: SeqBatch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        loss, kd = self.loss_terms(batch)
        comps = {"loss_rec": float(loss.detach())}
        for kind in ("skd", "ckd"):
            for m, value in kd.get(kind, {}).items():
                loss = loss + self.weights[(kind, m)] * value
                comps[f"loss_{kind}_{m}"] = float(value.detach())
        return loss, comps

    def diagnostics(self, batch: SeqBatch, epoch: int) -> dict[str, float]:
        """Once per epoch on one batch: `gnorm_skd_rel`, `gnorm_ckd_rel` (weighted SKD / CKD
        gradient norm over the parameters shared with the recommendation loss, relative to
        its) and `ckd_acc_<m>` / `ckd_chance_<m>` (the CKD head's accuracy on its codes, and
        the majority code's share: the accuracy of always guessing it)."""
        rec, kd = self.loss_terms(batch)
        terms = {"rec": rec}
        for kind in ("skd", "ckd"):
            if kd.get(kind):
                terms[kind] = sum(self.weights[(kind, m)] * v for m, v in kd[kind].items())
        out = relative_grad_norms(terms, list(self.parameters()))
        for m in kd.get("acc", {}):
            out[f"ckd_acc_{m}"] = float(kd["acc"][m])
            out[f"ckd_chance_{m}"] = float(kd["chance"][m])
        return out

    # optimisation -----------------------------------------------------------------------------
    def leaves_parameters_unused(self) -> bool:
        """With `skd` or `ckd` off, the SKD projections or the CKD classifier get no gradient."""
        return not (self.cfg.skd and self.cfg.ckd)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """Base groups plus the modality tables in their own (no-decay) group, whose lr the loop
        scales per epoch via `group_lr_scale`."""
        table_ids = {id(p) for p in self.mod_emb.parameters()}
        groups = super().param_groups(lr, weight_decay)
        for g in groups:
            g["params"] = [p for p in g["params"] if id(p) not in table_ids]
        groups.append({"params": list(self.mod_emb.parameters()), "lr": lr, "weight_decay": 0.0,
                       "name": MODALITY_GROUP})
        return groups

    def group_lr_scale(self, group: str, epoch: int) -> float:
        return async_lr_scale(self.cfg.async_lr, epoch) if group == MODALITY_GROUP else 1.0

    def retention_tables(self) -> dict[str, torch.Tensor]:
        return {"item": self.item_repr(), "id": self.item_emb.weight,
                **{f"{m}_table": self.mod_emb[m].weight for m in self.mods}}
