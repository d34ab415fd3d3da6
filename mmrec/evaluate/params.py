"""Schema of the `evaluate` section of params.yaml."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from mmrec.data.params import DataParams
from mmrec.features.params import ExtractParams


class EvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ks: list[int] = [5, 10, 20]
    mask_history: bool = True
    batch_users: int = Field(1024, ge=1)
    item_chunk: int = Field(65536, ge=1)
    popularity_groups: int = Field(4, ge=1)  # quantile groups after group 0 (cold items)
    # First history length of each new bucket: [4, 8, 12] -> 1-3, 4-7, 8-11, 12+.
    history_buckets: list[int] = [4, 8, 12]

    @field_validator("ks")
    @classmethod
    def _ks_positive(cls, v: list[int]) -> list[int]:
        if not v or any(k < 1 for k in v) or len(set(v)) != len(v):
            raise ValueError("ks must be a non-empty list of distinct positive cutoffs")
        return sorted(v)

    @field_validator("history_buckets")
    @classmethod
    def _edges_increasing(cls, v: list[int]) -> list[int]:
        if v != sorted(set(v)) or (v and v[0] < 2):
            raise ValueError("history_buckets must be strictly increasing lengths >= 2")
        return v


class EvaluateConfig(Protocol):
    """The sections of params.yaml the evaluate and report stages read (`mmrec.config.Params`
    fits). `train` is the train section (`models`, `common`, per-model sections), read here
    without importing the training package."""

    seed: int
    device: str
    data: DataParams
    extract: ExtractParams
    train: Any
    evaluate: EvaluateParams
