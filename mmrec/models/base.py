"""The one contract every recommender in mmrec implements.

Scores are always a dot product: `score(history) = user_repr(history) @ item_repr().T`, so the
shared evaluator can rank in item chunks for any model. Multi-branch models (late fusion, ODMT)
concatenate their branch vectors (user side scaled by 1/branches), which makes the dot product
equal to the average of the branch scores.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from mmrec.data.sequences import SeqBatch  # noqa: F401  (re-exported: part of the model contract)
from mmrec.features.types import ModalityFeatures


class PairTeacherLike(Protocol):
    """What a model needs of the KDSR teacher (implemented by mmrec.teacher.PairTeacher)."""

    denoised: torch.Tensor  # [N+1, dim]
    n_codes: int

    def pair_targets(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """For item index tensors of one shape: (holistic correlation r_ij float, code c_ij long)."""
        ...


@dataclass
class ModelContext:
    """Everything a model may read at construction time besides its own config."""

    n_items: int                                   # N; item ids are 1..N, 0 is padding
    max_len: int                                   # input positions per sequence
    item_pop: torch.Tensor                         # [N+1] training interaction counts (pad = 0)
    features: dict[str, ModalityFeatures] = field(default_factory=dict)   # present modalities
    teachers: dict[str, PairTeacherLike] = field(default_factory=dict)    # per modality
    device: torch.device = torch.device("cpu")
    world_size: int = 1


class SeqRecModel(nn.Module, ABC):
    """Base class of all sequential recommenders.

    Subclasses set `config_cls` (a pydantic model of their `train.<model>` params) and implement
    `item_repr`, `user_repr` and `loss`.
    """

    config_cls: type = None  # type: ignore[assignment]
    #: modalities the model cannot run without (checked before training starts)
    required_modalities: tuple[str, ...] = ()
    #: whether the model needs the KDSR teacher
    needs_teacher: bool = False
    #: whether the model reads token/patch states (not only pooled vectors)
    uses_tokens: bool = False
    #: False for models with nothing to learn (content_knn): the training loop validates them
    #: once and saves them as they are (epoch 0)
    trainable: bool = True

    @classmethod
    def wants_tokens(cls, cfg: dict) -> bool:
        """Whether a model built from raw config `cfg` needs token states loaded."""
        return bool(cls.uses_tokens)

    @abstractmethod
    def item_repr(self) -> torch.Tensor:
        """[N+1, D] candidate vectors for every item (row 0 = padding, never ranked)."""

    @abstractmethod
    def user_repr(self, history: torch.Tensor) -> torch.Tensor:
        """[B, D] user vectors for left-padded histories [B, L] (most recent item last)."""

    @abstractmethod
    def loss(self, batch: SeqBatch, epoch: int) -> tuple[torch.Tensor, dict[str, float]]:
        """Training loss for one batch and its named components (floats, for logging).

        `epoch` is 1-based (ramp-ups and schedules read it).
        """

    def leaves_parameters_unused(self) -> bool:
        """Whether a training step (`loss` then backward) may leave some parameter without a
        gradient, e.g. heads an ablation switches off. DDP must then look for them every step
        (`find_unused_parameters`, mmrec.train.ddp); the default False spares that cost."""
        return False

    def diagnostics(self, batch: SeqBatch, epoch: int) -> dict[str, float]:
        """Extra train_log.tsv columns, computed once per epoch on one training batch (the
        training loop restores the RNG afterwards). Default: none."""
        return {}

    def score(self, history: torch.Tensor) -> torch.Tensor:
        """[B, N+1] scores for full ranking (the evaluator chunks over items instead)."""
        return self.user_repr(history) @ self.item_repr().T

    def retention_tables(self) -> dict[str, torch.Tensor]:
        """Item embedding tables whose similarity structure is compared to the frozen features
        ("modality retention"). Default: the candidate vectors."""
        return {"item": self.item_repr()}

    def param_groups(self, lr: float, weight_decay: float) -> list[dict[str, Any]]:
        """AdamW groups: no decay for biases, norms and embeddings. Models with asynchronous
        learning rates (KDSR) override this and tag their groups."""
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            is_emb = any(isinstance(m, nn.Embedding) and p is m.weight for m in self.modules())
            (no_decay if p.ndim < 2 or is_emb or "norm" in name.lower() else decay).append(p)
        return [{"params": decay, "lr": lr, "weight_decay": weight_decay, "name": "decay"},
                {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": "no_decay"}]
