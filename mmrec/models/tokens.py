"""Frozen token/patch features on the model side: storage, grid pooling, projection, and a
small transformer feature transformation (FST) that turns an item's tokens into one vector.

Shared by ODMT (whose IMT mixes the modalities and the ID token) and by the fusion baselines'
`fst: transformer` (one transformer per modality, the ODMT paper's SASRec+EF/LF).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from mmrec.features.types import ModalityFeatures
from mmrec.models.layers import Block, Dropout


def pool_grid(tokens: torch.Tensor, mask: torch.Tensor, grid: int, chunk: int = 4096
              ) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool the square patch grid after the summary token to grid x grid tokens.

    tokens [N+1, 1 + g*g, d] -> [N+1, 1 + grid*grid, d] (same dtype); a pooled token is real if
    any of its patches was. Token counts that are not 1 + a square are pooled in 1-D.
    """
    n_patch = tokens.shape[1] - 1
    if grid <= 0 or n_patch <= grid * grid:
        return tokens, mask
    g = math.isqrt(n_patch)
    out_t, out_m = [], []
    for s in range(0, tokens.shape[0], chunk):
        t = tokens[s:s + chunk, 1:].float()                            # [c, P, d]
        m = mask[s:s + chunk, 1:].float()                              # [c, P]
        if g * g == n_patch:
            img = t.transpose(1, 2).reshape(t.shape[0], -1, g, g)      # [c, d, g, g]
            pooled = F.adaptive_avg_pool2d(img, grid).flatten(2).transpose(1, 2)
            pm = F.adaptive_max_pool2d(m.reshape(-1, 1, g, g), grid).flatten(1)
        else:
            pooled = F.adaptive_avg_pool1d(t.transpose(1, 2), grid * grid).transpose(1, 2)
            pm = F.adaptive_max_pool1d(m[:, None], grid * grid)[:, 0]
        out_t.append(torch.cat([tokens[s:s + chunk, :1], pooled.to(tokens.dtype)], 1))
        out_m.append(torch.cat([mask[s:s + chunk, :1], pm > 0], 1))
    return torch.cat(out_t), torch.cat(out_m)


def feature_projection(d_in: int, d: int, norm: bool) -> nn.Module:
    """P_m: frozen features -> hidden. Encoders differ wildly in scale (EfficientNet's final map is
    an unnormalised activation, transformer token states are layer-normed), so by default the
    features are layer-normalised first; without it the image branch barely trains."""
    return nn.Sequential(nn.LayerNorm(d_in), nn.Linear(d_in, d)) if norm else nn.Linear(d_in, d)


class TokenStore:
    """Frozen token features of one modality on the CPU (fp16, pinned with CUDA), gathered per
    batch. Deliberately not a buffer: never copied to the GPU whole, never saved in model.pt."""

    def __init__(self, tokens: torch.Tensor, mask: torch.Tensor) -> None:
        tokens = tokens.detach().to("cpu", torch.float16).contiguous()
        mask = mask.detach().to("cpu", torch.bool).contiguous()
        if torch.cuda.is_available():
            tokens, mask = tokens.pin_memory(), mask.pin_memory()
        self.tokens, self.mask = tokens, mask                          # [N+1, T, d_tok], [N+1, T]

    @classmethod
    def from_features(cls, feats: ModalityFeatures, modality: str, text_tokens: int,
                      image_grid: int, owner: str) -> "TokenStore":
        """Text: the first `text_tokens` tokens; image: the grid pooled to `image_grid`² (+ summary).
        Items without the feature get an all-padding mask."""
        if feats.tokens is None or feats.token_mask is None:
            raise ValueError(f"model {owner!r} needs the token states of modality {modality!r} "
                             f"(set extract.{modality}.tokens) or a pooled-vector setting")
        tok, msk = feats.tokens.detach().cpu(), feats.token_mask.detach().cpu().bool()
        if modality == "text":
            tok, msk = tok[:, :text_tokens], msk[:, :text_tokens]
        else:
            tok, msk = pool_grid(tok.half(), msk, image_grid)
        has = feats.has_feature.detach().to("cpu", torch.bool)
        return cls(tok, msk & has[:, None])

    @property
    def token_dim(self) -> int:
        return int(self.tokens.shape[-1])

    def gather(self, ids: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """(tokens [U, T, d_tok] float32, mask [U, T] bool) on `device` for item ids [U]."""
        idx = ids.to("cpu")
        tok, msk = self.tokens.index_select(0, idx), self.mask.index_select(0, idx)
        if device.type == "cuda":
            tok, msk = tok.pin_memory(), msk.pin_memory()
        return (tok.to(device, non_blocking=True).float(), msk.to(device, non_blocking=True))


def key_padding_mask(mask: torch.Tensor) -> torch.Tensor:
    """[U, 1, T, T] bool (True = may attend): padded keys hidden, every token sees itself (so an
    item without any real token never gives an all-masked row)."""
    T = mask.shape[1]
    allowed = mask.bool()[:, None, :].expand(-1, T, T) | torch.eye(T, dtype=torch.bool, device=mask.device)
    return allowed[:, None]


class TokenFST(nn.Module):
    """Transformer FST of one modality: P_m(tokens) -> `layers` pre-LN blocks -> LayerNorm ->
    the summary token (token 0: CLS / pooled image). [U] item ids -> [U, hidden]."""

    def __init__(self, store: TokenStore, hidden: int, layers: int, heads: int, dropout: float,
                 input_norm: bool = True) -> None:
        super().__init__()
        self.store = store
        self.proj = feature_projection(store.token_dim, hidden, input_norm)
        self.blocks = nn.ModuleList(Block(hidden, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(hidden)
        self.drop = Dropout(dropout)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        tok, msk = self.store.gather(ids, ids.device)
        x = self.drop(self.proj(tok))                                  # [U, T, d]
        mask = key_padding_mask(msk)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x[:, 0])                                      # [U, d]


def whitening_map(vectors: torch.Tensor, has: torch.Tensor, eps: float = 1e-5
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(mean [d], W [d, d]) of the ZCA whitening of the rows of `vectors` [N+1, d] with `has`:
    (x - mean) @ W has zero mean, identity covariance over those rows. Eigenvalues are floored
    at eps x their mean, so directions the catalogue does not span are not blown up."""
    x = vectors[has.bool()].double()                                   # [M, d]
    if x.shape[0] < 2:
        raise ValueError(f"whitening needs at least 2 items with features, got {x.shape[0]}")
    mean = x.mean(0)
    xc = x - mean
    cov = xc.T @ xc / (x.shape[0] - 1)                                 # [d, d]
    vals, vecs = torch.linalg.eigh(cov)
    vals = vals.clamp_min(eps * float(vals.clamp_min(0).mean()) + 1e-12)
    w = vecs @ torch.diag(vals.rsqrt()) @ vecs.T
    return mean.float(), w.float()


def whiten_features(feats: ModalityFeatures, chunk: int = 4096) -> ModalityFeatures:
    """A copy of `feats` with the pooled vectors whitened (`whitening_map`, fitted on the items
    that have the feature; rows without it stay zero). Token states of the same size go through
    the same map (real tokens only); tokens of another size are left as they are."""
    has = feats.has_feature.detach().cpu().bool()
    mean, w = whitening_map(feats.vector.detach().cpu().float(), has)
    vector = ((feats.vector.detach().cpu().float() - mean) @ w) * has[:, None]
    tokens = feats.tokens
    if tokens is not None and feats.token_mask is not None and tokens.shape[-1] == w.shape[0]:
        parts = []
        for s in range(0, tokens.shape[0], chunk):
            t = tokens[s:s + chunk].detach().cpu().float()
            m = feats.token_mask[s:s + chunk].detach().cpu().bool()
            parts.append((((t - mean) @ w) * m[..., None]).to(tokens.dtype))
        tokens = torch.cat(parts)
    return ModalityFeatures(vector.to(feats.vector.device), feats.has_feature, tokens, feats.token_mask,
                            feats.encoder)
