"""Content kNN: no training. A user is the decayed sum of the unit-normalised frozen feature
vectors of their recent items; every item is scored by its cosine to that profile (the mean over
modalities).

It is the floor a content model must clear: new items score exactly as old ones do, so it shows
how far the frozen encoders alone carry new and rare items. Scores are a dot product like every
model's (mmrec.models.base): item rows are the unit-normalised vectors of each modality,
concatenated; the user side is the unit-normalised profile of each modality, divided by the
number of modalities. An item without a modality's feature scores 0 on that modality.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from mmrec.models.base import ModelContext, SeqBatch, SeqRecModel
from mmrec.models.configs import ContentKnnConfig
from mmrec.models.layers import fit_window, modalities_to_use
from mmrec.models.registry import MODELS


def recency_weights(history: torch.Tensor, decay: float) -> torch.Tensor:
    """[B, L] weights of left-padded histories: decay**k for the item k places before the most
    recent one (the last column), 0 on padding."""
    steps = torch.arange(history.shape[1] - 1, -1, -1, device=history.device, dtype=torch.float32)
    return (decay ** steps)[None] * (history > 0)


@MODELS.register("content_knn")
class ContentKnn(SeqRecModel):
    config_cls = ContentKnnConfig
    trainable = False

    def __init__(self, ctx: ModelContext, cfg: ContentKnnConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.modalities = modalities_to_use("content_knn", cfg.modalities, sorted(ctx.features))
        for m in self.modalities:
            f = ctx.features[m]
            vec = F.normalize(f.vector.float(), dim=1) * f.has_feature[:, None]    # [N+1, d_m]
            # frozen inputs, not weights: rebuilt from the feature files when a checkpoint loads
            self.register_buffer(f"unit_{m}", vec, persistent=False)

    def _unit(self, m: str) -> torch.Tensor:
        return getattr(self, f"unit_{m}")

    def item_repr(self) -> torch.Tensor:
        return torch.cat([self._unit(m) for m in self.modalities], 1)           # [N+1, sum d_m]

    def user_repr(self, history: torch.Tensor) -> torch.Tensor:
        hist = fit_window(history, self.cfg.max_len)                            # [B, L]
        w = recency_weights(hist, self.cfg.decay)[..., None]                    # [B, L, 1]
        n = len(self.modalities)
        return torch.cat([F.normalize((self._unit(m)[hist] * w).sum(1), dim=1) / n
                          for m in self.modalities], 1)                          # [B, sum d_m]

    def loss(self, batch: SeqBatch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise RuntimeError("content_knn has nothing to train: the training loop only validates it")
