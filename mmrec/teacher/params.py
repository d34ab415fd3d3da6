"""Schema of the `teacher` section of params.yaml."""

from __future__ import annotations

from typing import Any, Literal, Protocol

from pydantic import Field, model_validator

from mmrec.data.params import DataParams
from mmrec.schema import StrictParams


class TeacherParams(StrictParams):
    dim: int = Field(128, ge=2)
    subspaces: int = Field(8, ge=1)
    codes: int = Field(50, ge=2, le=255)
    correlation: Literal["cosine", "dot", "euclidean"] = "cosine"
    # denoising autoencoder
    noise_std: float = Field(0.1, ge=0)
    feature_dropout: float = Field(0.1, ge=0, lt=1)
    epochs: int = Field(200, ge=1)
    patience: int = Field(10, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-3, gt=0)
    holdout: float = Field(0.1, gt=0, lt=1)
    # codebook
    random_pairs: int = Field(200_000, ge=0)
    max_cooccurring_pairs: int = Field(2_000_000, ge=0)
    kmeans_iters: int = Field(25, ge=1)

    @model_validator(mode="after")
    def _dim_splits_into_subspaces(self) -> "TeacherParams":
        if self.dim % self.subspaces:
            raise ValueError(f"teacher.dim ({self.dim}) must be divisible by teacher.subspaces "
                             f"({self.subspaces}): dissected correlations split the vector evenly")
        return self


class TeacherConfig(Protocol):
    """The sections of params.yaml the teacher stage reads (`mmrec.config.Params` fits)."""

    seed: int
    device: str
    data: DataParams
    extract: Any  # mmrec.features.params.ExtractParams, read without importing features (a floor up)
    teacher: TeacherParams
