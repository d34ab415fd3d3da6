"""In-memory form of one modality's frozen features, as models consume them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch


@dataclass
class ModalityFeatures:
    """Frozen features of one modality for every item, indexed by item_idx (row 0 = padding).

    vector:      [N+1, d] float32 pooled vectors; zero rows where has_feature is False.
    has_feature: [N+1] bool; False for padding and for items whose image/text was missing.
    tokens:      [N+1, T, d_tok] (float16 on disk and in memory) token/patch states, or None.
    token_mask:  [N+1, T] bool, True where a token is real, or None.
    encoder:     the encoder name that produced them (params string).
    """

    vector: torch.Tensor
    has_feature: torch.Tensor
    tokens: Optional[torch.Tensor] = None
    token_mask: Optional[torch.Tensor] = None
    encoder: str = ""

    @property
    def dim(self) -> int:
        return int(self.vector.shape[1])

    @property
    def n_items(self) -> int:
        """N, the number of real items (rows minus padding)."""
        return int(self.vector.shape[0]) - 1

    def to(self, device: torch.device | str) -> "ModalityFeatures":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return ModalityFeatures(move(self.vector), move(self.has_feature), move(self.tokens),
                                move(self.token_mask), self.encoder)
