"""ODMT (Ji et al., ACM MM 2023): ID-aware multimodal transformer + online distillation.

Item side, per item j (the "IMT"):
    tokens  Z = [P_t·text_tokens ; P_v·image_tokens ; e_id(j)]          # [T_t + T_v + 1, d]
    Z' = IMT(Z, mask)   mask: padded text keys hidden; with `id_mask` the text and image tokens
                        cannot attend to the ID token, while the ID token attends to everything
    h_text = Z'[0] (text summary/CLS), h_image = Z'[T_t] (image summary), h_id = Z'[-1]
    q^m = W2·LeakyReLU(W1·h_m + b1) + b2        (a separate 2-layer MLP per branch)
User side: one SASRec encoder per branch over q^m of the history. Branch m scores item i by
<u^m, q^m_i>; the model's score is the average of the branch scores (concatenated vectors, user
side scaled by 1/branches, see mmrec.models.base).

Training: every branch has its own recommendation loss (default the debiased in-batch softmax,
`loss: inbatch`; `full_ce` runs the IMT over every item each step, so it is for small catalogues
only), plus w(epoch) · online distillation (mmrec.objectives.distill: ID -> text, ID -> image,
ensemble -> ID). The IMT runs once per unique item of a batch and is scattered back to slots.

Differences from the released ODMT code (github.com/xyliugo/ODMT, code/model/model.py and
modules.py), all deliberate:
- The IMT and user-encoder blocks are mmrec.models.layers' pre-LN blocks (GELU MLP), not
  post-LN/ReLU; heads and layers of the IMT are separate settings (the reference ties them).
- The ID token is the ID embedding itself (d-dimensional); the reference adds a Linear on top.
- `id_init` projects each modality's pooled vector (the feature file's `vector`; token 0 where
  that vector is not in the token space) with that modality's own token projection P_m at
  construction time, so the ID token starts in the same space as the modality tokens it attends
  with; `mean` averages the available modalities per item; items with no feature keep the
  random init. The reference uses the CLS states.
- The teacher side of the KD terms is detached by default (see mmrec.objectives.distill).
- Token features stay on the CPU in float16 (pinned when CUDA is present) and are gathered per
  batch; image grid tokens can be average-pooled (`image_grid`) and text tokens truncated
  (`text_tokens`) to save compute.

Ablations of the paper's Table 3 are switches: `id_init` (mean/text/image/none), `id_mask`,
`imt: false` ("w/o IMT (1)": one transformer of the same depth per modality over the same
tokens, the ID branch its embedding), `distill: false` ("w/o online distillation": the
late-fusion loss, the CE of the mean branch logits, and no KD), `use_id` (off: no ID token and
no ID branch; KD then flows ensemble -> each modality). Two cheaper variants keep their own
names: `imt: pooled` (no transformer, projected pooled vectors) and `distill: branch_only`
(each branch's own loss, no KD).

Levers for new and rare items: `cold_id: mask` / `id_dropout` put a learned [MASK] embedding in
the ID token of cold (and, in training, randomly chosen) items (mmrec.models.layers.InductiveId;
params.yaml turns both on for `odmt`), `imt_text_vector` adds the whole text's pooled vector as
one more text token, `whiten` whitens the frozen features, `loss_norm: cosine` scores with cosines.

`odmt_kdsr` adds KDSR's correlation supervision (SKD + CKD against the teacher of that
modality, over the unique item pairs of each training input sequence) on the text and image
branch item vectors q^m.
"""

from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.models.base import ModelContext, SeqBatch, SeqRecModel
from mmrec.models.configs import OdmtConfig, OdmtKdsrConfig
from mmrec.models.layers import (
    Block,
    Dropout,
    RecLossMixin,
    SeqTransformer,
    attend,
    fit_window,
    id_path,
    init_weights,
    modalities_to_use,
    read_ids,
)
from mmrec.models.registry import MODELS
from mmrec.models.tokens import TokenFST, TokenStore, feature_projection, key_padding_mask
from mmrec.objectives.distill import ensemble_logits, kd_schedule, online_distillation
from mmrec.objectives.gradients import relative_grad_norms
from mmrec.objectives.losses import (
    Candidates,
    add_log_mult,
    candidate_logits,
    full_candidates,
    gather_candidates,
    inbatch_unique_candidates,
    row_log_mult,
    softmax_ce,
    training_rows,
)


def imt_attention_mask(text_mask: torch.Tensor, image_mask: torch.Tensor, has_id: bool,
                       id_mask: bool) -> torch.Tensor:
    """[U, 1, L, L] bool (True = may attend) over tokens [text ; image ; (ID)].

    text_mask [U, T_t], image_mask [U, T_v]: True where a token is real (either may have T = 0).
    Padded keys are hidden; with `id_mask` (and an ID token) no text/image query sees the ID key.
    Every token may attend to itself, so an item without features never gives an all-masked row.
    """
    U = text_mask.shape[0]
    parts = [text_mask.bool(), image_mask.bool()]
    if has_id:
        parts.append(torch.ones(U, 1, dtype=torch.bool, device=text_mask.device))
    allowed = key_padding_mask(torch.cat(parts, dim=1))               # [U, 1, Lq, Lk]
    if has_id and id_mask:
        allowed[:, :, :-1, -1] = False                                 # the diagonal is not touched
    return allowed


def _block_rows(block: Block, x: torch.Tensor, mask: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """`block(x, mask)[:, rows]` computed for the query rows only: x [U, L, d] -> [U, R, d].

    The IMT's last layer only feeds its summary/ID positions onward, so its other queries and
    their MLP are wasted work (L / R times the needed compute). Uses the internals of
    mmrec.models.layers.Block (pre-LN: x + attn(norm1 x); x + mlp(norm2 x)); the tests check it
    against the full block.
    """
    attn = block.attn
    U, L, D = x.shape
    H = attn.heads
    h = block.norm1(x)                                                 # [U, L, d]
    w, b = attn.qkv.weight, attn.qkv.bias
    q = F.linear(h[:, rows], w[:D], None if b is None else b[:D])      # [U, R, d]
    kv = F.linear(h, w[D:], None if b is None else b[D:])              # [U, L, 2d]
    k, v = kv.split(D, dim=-1)
    q = q.view(U, -1, H, D // H).transpose(1, 2)                       # [U, H, R, dh]
    k = k.view(U, L, H, D // H).transpose(1, 2)
    v = v.view(U, L, H, D // H).transpose(1, 2)
    y = attend(q, k, v, mask[:, :, rows], attn.dropout, block.training)
    out = x[:, rows] + block.drop(attn.proj(y.transpose(1, 2).reshape(U, -1, D)))
    return out + block.drop(block.mlp(block.norm2(out)))


def _branch_mlp(d: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(d, d), nn.LeakyReLU(), nn.Linear(d, d))


@MODELS.register("odmt")
class ODMT(RecLossMixin, SeqRecModel):
    """ODMT; see the module docstring. Branches: "id" (if use_id), then "text", "image"."""

    config_cls = OdmtConfig
    uses_tokens = True
    display_name = "odmt"                                              # the registry name, in errors

    @classmethod
    def wants_tokens(cls, cfg: dict) -> bool:
        """Token states are read unless `imt: pooled` (projected pooled vectors only)."""
        return cfg.get("imt", True) != "pooled"

    def __init__(self, ctx: ModelContext, cfg: OdmtConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.n_items = ctx.n_items
        name = self.display_name
        # A multimodal model without any modality is a misconfigured dataset, not an ID model.
        self.modalities = modalities_to_use(name, cfg.modalities, list(ctx.features), needed=1)
        self.branches = (["id"] if cfg.use_id else []) + self.modalities
        if cfg.use_id and cfg.id_init in ("text", "image") and cfg.id_init not in self.modalities:
            raise ValueError(f"model {name!r}: id_init={cfg.id_init!r} but that modality is not used "
                             f"(modalities: {', '.join(self.modalities) or 'none'})")
        d = cfg.hidden
        self._stores: dict[str, TokenStore] = {}
        self._pooled: dict[str, torch.Tensor] = {}
        proj, fst = {}, {}
        for m in self.modalities:
            feats = ctx.features[m]
            if cfg.imt == "pooled":
                self._pooled[m] = feats.vector.detach().to("cpu", torch.float32)
                proj[m] = feature_projection(feats.vector.shape[-1], d, cfg.input_norm)
                continue
            self._stores[m] = TokenStore.from_features(feats, m, cfg.text_tokens, cfg.image_grid, name)
            if cfg.imt is True:
                proj[m] = feature_projection(self._stores[m].token_dim, d, cfg.input_norm)
            else:  # w/o IMT: a transformer of the same depth per modality (it owns its projection)
                fst[m] = TokenFST(self._stores[m], d, cfg.imt_layers, cfg.imt_heads, cfg.imt_dropout,
                                  cfg.input_norm)
        self.proj = nn.ModuleDict(proj)
        self.fst = nn.ModuleDict(fst)
        if cfg.imt_text_vector:
            if cfg.imt is not True or "text" not in self.modalities:
                raise ValueError(f"model {name!r}: imt_text_vector needs imt: true and the text modality")
            # the whole text's pooled vector as one more text token (the first `text_tokens`
            # tokens are mostly the title; late fusion reads the whole text's vector)
            vec = ctx.features["text"]
            self._pooled["text"] = vec.vector.detach().to("cpu", torch.float32)
            self._text_has = vec.has_feature.detach().to("cpu", torch.bool)
            self.text_vec_proj = feature_projection(vec.vector.shape[-1], d, cfg.input_norm)
        self.id_emb = nn.Embedding(ctx.n_items + 1, d, padding_idx=0) if cfg.use_id else None
        if cfg.imt is True and self.modalities:
            self.imt_blocks = nn.ModuleList(Block(d, cfg.imt_heads, cfg.imt_dropout)
                                            for _ in range(cfg.imt_layers))
            self.imt_norm = nn.LayerNorm(d)
            self.imt_drop = Dropout(cfg.imt_dropout)
        self.mlp = nn.ModuleDict({b: _branch_mlp(d) for b in self.branches})
        self.encoders = nn.ModuleDict({b: SeqTransformer(d, cfg.layers, cfg.heads, cfg.dropout, cfg.max_len)
                                       for b in self.branches})
        init_weights(self)
        if self.id_emb is not None and cfg.id_init != "none":
            self._init_id_from_features(ctx, cfg.id_init)
        self.inductive = id_path(ctx, cfg, d) if cfg.use_id else None
        self.init_log_pop(ctx)

    # ----------------------------------------------------------------- construction helpers
    def _token_projection(self, m: str) -> nn.Module:
        """P_m, the projection of modality m's tokens (the pooled vector's with `imt: pooled`)."""
        return self.fst[m].proj if m in self.fst else self.proj[m]

    def _init_source(self, ctx: ModelContext, m: str) -> torch.Tensor:
        """[N+1, d_tok] what the ID row is initialised from: the pooled vector (the feature
        file's `vector`: MiniLM's mean-pooled sentence embedding, not its CLS state, which
        would make the ID and text branches start as near-duplicates). When the pooled vector
        does not live in the token space (its dim differs from the tokens', e.g. EfficientNet's
        1280-d pool vs its grid), token 0 (that encoder's summary token) stands in for it."""
        vec = ctx.features[m].vector.detach().to("cpu", torch.float32)
        if m not in self._stores or vec.shape[-1] == self._stores[m].token_dim:
            return vec
        return self._stores[m].tokens[:, 0]

    @torch.no_grad()
    def _init_id_from_features(self, ctx: ModelContext, how: str) -> None:
        """ID row j = P_m(pooled_m[j]) (mean over the used modalities with a feature for `mean`)."""
        use = self.modalities if how == "mean" else [how]
        if not use:
            return
        total = torch.zeros_like(self.id_emb.weight)                    # [N+1, d]
        count = torch.zeros(total.shape[0], 1)
        for m in use:
            has = ctx.features[m].has_feature.detach().to("cpu", torch.bool)
            src = self._init_source(ctx, m)
            project = self._token_projection(m)
            for s in range(0, src.shape[0], self.cfg.item_chunk):
                rows = slice(s, s + self.cfg.item_chunk)
                total[rows] += project(src[rows].float()) * has[rows, None]
            count += has[:, None].float()
        ok = count[:, 0] > 0
        ok[0] = False
        self.id_emb.weight[ok] = total[ok] / count[ok]

    # ----------------------------------------------------------------- item side
    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def item_vectors(self, ids: torch.Tensor) -> dict[str, torch.Tensor]:
        """Branch item vectors q^m [U, d] for item ids [U] (each id encoded once per call)."""
        dev = ids.device
        h: dict[str, torch.Tensor] = {}
        if self.cfg.imt is True and self.modalities:
            parts, masks, starts = [], [], {}
            pos = 0
            for m in ("text", "image"):
                if m in self.modalities:
                    tok, msk = self._stores[m].gather(ids, dev)
                    z_m = self.proj[m](tok)                            # [U, T_m, d]
                    if m == "text" and self.cfg.imt_text_vector:
                        cpu = ids.cpu()
                        vec = self._pooled["text"].index_select(0, cpu).to(dev)
                        z_m = torch.cat([z_m, self.text_vec_proj(vec)[:, None]], 1)    # [U, T_t + 1, d]
                        msk = torch.cat([msk, self._text_has.index_select(0, cpu).to(dev)[:, None]], 1)
                    starts[m] = pos
                    pos += z_m.shape[1]
                    parts.append(z_m)
                    masks.append(msk)
                else:
                    masks.append(torch.zeros(ids.shape[0], 0, dtype=torch.bool, device=dev))
            if self.id_emb is not None:
                parts.append(read_ids(self.inductive, self.id_emb, ids)[:, None])   # [U, 1, d]
            z = self.imt_drop(torch.cat(parts, dim=1))                 # [U, L, d]
            mask = imt_attention_mask(masks[0], masks[1], self.id_emb is not None, self.cfg.id_mask)
            for block in self.imt_blocks[:-1]:
                z = block(z, mask)
            # only the summary tokens and the ID token leave the IMT: last layer on those rows
            names = list(self.modalities) + (["id"] if self.id_emb is not None else [])
            rows = torch.tensor([starts[m] for m in self.modalities]
                                + ([z.shape[1] - 1] if self.id_emb is not None else []), device=dev)
            out = self.imt_norm(_block_rows(self.imt_blocks[-1], z, mask, rows))   # [U, R, d]
            for r, name in enumerate(names):
                h[name] = out[:, r]
        else:
            for m in self.modalities:
                if m in self.fst:                                      # w/o IMT: own transformer
                    h[m] = self.fst[m](ids)
                else:                                                  # imt: pooled
                    h[m] = self.proj[m](self._pooled[m].index_select(0, ids.cpu()).to(dev))
            if self.id_emb is not None:
                h["id"] = read_ids(self.inductive, self.id_emb, ids)
        return {b: self.mlp[b](h[b]) for b in self.branches}

    def slot_vectors(self, seq: torch.Tensor) -> tuple[dict[str, torch.Tensor], torch.Tensor, dict[str, torch.Tensor]]:
        """Branch vectors of every slot of `seq` [B, L] -> ({m: [B, L, d]}, unique ids [U],
        {m: [U, d]}): the IMT runs once per unique item, then results are scattered back."""
        uniq, inv = torch.unique(seq, return_inverse=True)             # [U], [B, L]
        per_item = self.item_vectors(uniq)
        return {b: v[inv] for b, v in per_item.items()}, uniq, per_item

    def branch_tables(self) -> dict[str, torch.Tensor]:
        """{branch: [N+1, d]} item vectors of the whole catalogue (row 0 is the padding item)."""
        ids = torch.arange(self.n_items + 1, device=self._device())
        chunks = [self.item_vectors(ids[s:s + self.cfg.item_chunk])
                  for s in range(0, ids.shape[0], self.cfg.item_chunk)]
        return {b: torch.cat([c[b] for c in chunks]) for b in self.branches}

    def _frozen_tables(self) -> Optional[dict[str, torch.Tensor]]:
        """Branch tables computed once per evaluation: in eval mode without autograd the IMT
        output of an item is fixed, so `user_repr` reads history vectors from the tables that
        `item_repr` just built instead of re-running the IMT for every user batch."""
        if self.training or torch.is_grad_enabled():
            return None
        cached = self.__dict__.get("_eval_tables")
        if cached is None or cached[0] != self._weights_version():
            return None                                                # weights changed since
        return cached[1]

    def _weights_version(self) -> tuple[int, ...]:
        # every in-place update (optimizer step, load_state_dict) bumps a tensor's _version
        return tuple(p._version for p in self.parameters())

    def train(self, mode: bool = True) -> "ODMT":
        if mode:
            self.__dict__.pop("_eval_tables", None)
        return super().train(mode)

    def item_repr(self) -> torch.Tensor:
        tables = self._frozen_tables() or self.branch_tables()
        if not self.training and not torch.is_grad_enabled():
            self.__dict__["_eval_tables"] = (self._weights_version(), tables)
        return torch.cat([self.scored(tables[b]) for b in self.branches], dim=1)   # [N+1, d * branches]

    def retention_tables(self) -> dict[str, torch.Tensor]:
        tables = self._frozen_tables() or self.branch_tables()
        return {"item": torch.cat([tables[b] for b in self.branches], 1), **tables}

    # ----------------------------------------------------------------- user side
    def user_repr(self, history: torch.Tensor) -> torch.Tensor:
        hist = fit_window(history, self.cfg.max_len)                   # [B, L]
        tables = self._frozen_tables()
        if tables is not None:
            slots = {b: t[hist] for b, t in tables.items()}            # {m: [B, L, d]}
        else:
            slots, _, _ = self.slot_vectors(hist)
        valid = hist > 0
        n = len(self.branches)
        return torch.cat([self.scored(self.encoders[b](slots[b], valid)[:, -1]) / n for b in self.branches], 1)

    def branch_scores(self, history: torch.Tensor) -> dict[str, torch.Tensor]:
        """{branch: [B, N+1]} scores of each branch alone (for per-branch metrics)."""
        hist = fit_window(history, self.cfg.max_len)
        slots, _, _ = self.slot_vectors(hist)
        tables = self.branch_tables()
        return {b: self.scored(self.encoders[b](slots[b], hist > 0)[:, -1]) @ self.scored(tables[b]).T
                for b in self.branches}

    # ----------------------------------------------------------------- training
    def branch_logits(self, batch: SeqBatch) -> tuple[dict[str, torch.Tensor], Candidates,
                                                       Optional[torch.Tensor], torch.Tensor,
                                                       dict[str, torch.Tensor]]:
        """Per-branch candidate logits of a batch, without the column multiplicities:
        ({m: [M, C]}, Candidates, multiplicity offsets [M, C] or None, unique ids [U],
        {m: [U, d]} unique-item vectors). With `loss: inbatch` the columns are the batch's unique
        items (mmrec.objectives.losses.inbatch_unique_candidates)."""
        seq = batch.seq
        rows = training_rows(batch)
        valid = batch.inputs > 0
        offsets = None
        if self.cfg.loss == "inbatch":
            slots, uniq, per_item = self.slot_vectors(seq)            # {m: [B, S+1, d]}
            cands = inbatch_unique_candidates(seq, rows, self.log_pop)
            local = uniq[uniq > 0]                                      # sorted real items
            pos = torch.searchsorted(uniq, local)
            cand_vecs = {b: gather_candidates(local, self.scored(per_item[b][pos]))[1] for b in self.branches}
            offsets = row_log_mult(cands)
        else:
            # the catalogue's vectors serve the inputs too: one IMT pass (and one id_dropout
            # draw) per step
            tables = self.branch_tables()
            uniq = torch.unique(seq)
            slots = {b: t[seq] for b, t in tables.items()}
            per_item = {b: t[uniq] for b, t in tables.items()}
            cands = full_candidates(batch.targets[rows], self.n_items)
            cand_vecs = {b: self.scored(tables[b][1:]) for b in self.branches}
        logits = {}
        for b in self.branches:
            user = self.scored(self.encoders[b](slots[b][:, :-1], valid)[rows])   # [M, d]
            logits[b] = candidate_logits(user, cand_vecs[b], cands, self.cfg.temperature,
                                         multiplicity=False)
        return logits, cands, offsets, uniq, per_item

    def loss_terms(self, batch: SeqBatch, epoch: int) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor], float]:
        """(weighted terms {"rec", "kd", extras...} whose sum is the loss, named components for
        the log, the KD weight w(epoch)).

        `distill: true`: rec = sum of the branches' own losses, kd = w * the distillation terms.
        `distill: false` (the paper's "w/o online distillation"): rec = the late-fusion loss, the
        CE of the ensemble logits (the mean of the branch logits), and no KD.
        `distill: branch_only`: the branches' own losses, no KD.
        """
        logits, cands, offsets, uniq, per_item = self.branch_logits(batch)
        if self.cfg.distill is False:
            ens = add_log_mult(ensemble_logits(list(logits.values())), cands, offsets)
            parts: dict[str, torch.Tensor] = {"loss_rec": softmax_ce(ens, cands)}
        else:
            parts = {f"loss_rec_{b}": softmax_ce(add_log_mult(lg, cands, offsets), cands)
                     for b, lg in logits.items()}
        terms = {"rec": sum(parts.values())}
        w = (kd_schedule(epoch, self.cfg.kd_weight, self.cfg.rampup_epochs)
             if self.cfg.distill is True else 0.0)
        if w > 0:
            kd = online_distillation(logits, self.cfg.kd_temperature, self.cfg.kd_loss,
                                     self.cfg.detach_teacher, offsets)
            if kd:
                terms["kd"] = w * sum(kd.values())
                parts.update(kd)
        extra, extra_parts = self.extra_terms(batch, uniq, per_item)
        terms.update(extra)
        parts.update(extra_parts)
        return terms, parts, w

    def loss(self, batch: SeqBatch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        terms, parts, w = self.loss_terms(batch, epoch)
        logs = {k: float(v.detach()) for k, v in parts.items()}
        logs["kd_w"] = w
        return sum(terms.values()), logs

    def diagnostics(self, batch: SeqBatch, epoch: int) -> dict[str, float]:
        """`gnorm_<term>_rel` for each weighted term (kd; skd/ckd in odmt_kdsr) against the
        recommendation loss, over the parameters they share (one batch per epoch)."""
        terms, _, _ = self.loss_terms(batch, epoch)
        return relative_grad_norms(terms, list(self.parameters())) if len(terms) > 1 else {}

    def extra_terms(self, batch: SeqBatch, uniq: torch.Tensor, per_item: dict[str, torch.Tensor]
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        """Hook for subclasses: (weighted loss terms to add, named components for the log)."""
        return {}, {}


@MODELS.register("odmt_kdsr")
class ODMTKDSR(ODMT):
    """ODMT whose text/image branch item vectors also learn KDSR's teacher correlations."""

    config_cls = OdmtKdsrConfig
    needs_teacher = True
    display_name = "odmt_kdsr"

    def __init__(self, ctx: ModelContext, cfg: OdmtKdsrConfig) -> None:
        super().__init__(ctx, cfg)
        missing = [m for m in self.modalities if m not in ctx.teachers]
        if not self.modalities or missing:
            raise ValueError(f"model 'odmt_kdsr' needs a KDSR teacher for each used modality; missing: "
                             f"{', '.join(missing) or 'no modality used'} (run the teacher stage)")
        self.teachers = {m: ctx.teachers[m] for m in self.modalities}
        from mmrec.models.kdsr import PairHeads  # the KDSR student heads, shared

        heads = nn.ModuleDict({m: PairHeads(cfg.hidden, int(self.teachers[m].n_codes))
                               for m in self.modalities})
        init_weights(heads)
        self.corr_heads = heads

    def extra_terms(self, batch: SeqBatch, uniq: torch.Tensor, per_item: dict[str, torch.Tensor]
                    ) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
        from mmrec.objectives.correlation_kd import (
            ckd_loss,
            kd_weights,
            pair_correlation,
            sequence_pairs,
            skd_loss,
            skd_weight,
        )

        cfg: OdmtKdsrConfig = self.cfg  # type: ignore[assignment]
        weights = kd_weights(skd_weight(cfg.skd_form, cfg.lambda_skd), cfg.lambda_ckd, cfg.reference_weight_bug)
        rows, i, j = sequence_pairs(batch.inputs, cfg.include_diagonal)   # [P] each
        # uniq is sorted (torch.unique), so searchsorted maps item ids to their unique row.
        pi, pj = torch.searchsorted(uniq, i), torch.searchsorted(uniq, j)
        parts: dict[str, torch.Tensor] = {}
        terms: dict[str, torch.Tensor] = {}
        for m in self.modalities:
            teacher = self.teachers[m]
            keep = teacher.pair_mask(i, j).to(i.device)
            r, c = teacher.pair_targets(i[keep], j[keep])
            e = per_item[m]                                            # [U, d]
            ei, ej = e[pi[keep]], e[pj[keep]]
            heads = self.corr_heads[m]
            kind = str(getattr(teacher, "correlation", "cosine"))
            r_hat = pair_correlation(heads.project(ei), heads.project(ej), kind)
            skd = skd_loss(r_hat.float(), r.to(r_hat.device).float(), cfg.skd_tau, cfg.skd_form,
                           rows=rows[keep], n_rows=batch.seq.shape[0])
            ckd = ckd_loss(heads.code_logits(ei, ej), c.to(ei.device))
            parts[f"loss_skd_{m}"], parts[f"loss_ckd_{m}"] = skd, ckd
            terms["skd"] = terms.get("skd", 0.0) + weights[("skd", m)] * skd
            terms["ckd"] = terms.get("ckd", 0.0) + weights[("ckd", m)] * ckd
        return terms, parts
