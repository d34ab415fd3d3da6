"""The content prior: a trained model's scores plus beta times content_knn's.

    score(user, item) = model(user, item) + beta * knn(user, item)

knn is the cosine of the item's frozen features to the user's decayed content profile
(mmrec.models.content_knn). A trained model ranks the items its ID table has learned; new and
rare items, whose rows it has not, then still score by what they are. beta is chosen on the
validation split when training ends (mmrec.train.prior), 0 among the choices, and kept in
model.pt, so every reader of a checkpoint (evaluate, export, `mmrec recommend`) ranks with it.

The sum stays a dot product, as the model contract requires (mmrec.models.base):
[model user | beta * knn user] . [model item | knn item].
"""

from __future__ import annotations

from typing import Any

import torch

from mmrec.models.base import ModelContext, SeqBatch, SeqRecModel
from mmrec.models.configs import ContentKnnConfig
from mmrec.models.content_knn import ContentKnn

#: the betas `content_prior: auto` chooses among on validation. Model scores are unnormalised dot
#: products whose scale differs by model and dataset (on Scientific's validation ODMT gained most
#: at 4, late fusion at 8; on the H&M sample late fusion and KDSR at 16-32, where a trained model
#: knows little), hence a wide doubling grid up to content_knn all but alone; 0 keeps a prior
#: that does not help validation out.
PRIOR_BETAS: tuple[float, ...] = (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0)


class ContentPrior(SeqRecModel):
    """`base` with `beta` times `knn`'s scores added. Not trained and not registered: built
    around a trained model by `with_content_prior`."""

    trainable = False

    def __init__(self, base: SeqRecModel, knn: ContentKnn, beta: float) -> None:
        super().__init__()
        self.base = base
        self.knn = knn
        self.beta = float(beta)

    @property
    def cfg(self) -> Any:
        """The base model's config (its max_len is the history every reader feeds)."""
        return self.base.cfg

    def item_repr(self) -> torch.Tensor:
        return torch.cat([self.base.item_repr(), self.knn.item_repr()], 1)       # [N+1, D + sum d_m]

    def user_repr(self, history: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.base.user_repr(history), self.beta * self.knn.user_repr(history)], 1)

    def retention_tables(self) -> dict[str, torch.Tensor]:
        return self.base.retention_tables()

    def loss(self, batch: SeqBatch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        raise RuntimeError("the content prior is added to a trained model; train the model itself")


def prior_knn(model: SeqRecModel, ctx: ModelContext) -> ContentKnn:
    """content_knn over the modalities `model` reads (its config's `modalities`, None = all),
    seeing the same history window. `ctx` holds the frozen features as extracted (not whitened)."""
    cfg = model.cfg
    knn_cfg = ContentKnnConfig(max_len=cfg.max_len, modalities=getattr(cfg, "modalities", None))
    return ContentKnn(ctx, knn_cfg).to(ctx.device)


def with_content_prior(model: SeqRecModel, ctx: ModelContext, beta: float) -> SeqRecModel:
    """`model` scored with the content prior `beta`; `model` itself when beta is 0."""
    if beta < 0:
        raise ValueError(f"content prior beta must be >= 0, got {beta}")
    if beta == 0:
        return model
    return ContentPrior(model, prior_knn(model, ctx), beta).eval()
