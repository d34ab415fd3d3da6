"""Schema of the `evaluate` section of params.yaml."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class EvaluateParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    ks: list[int] = [5, 10, 20]
    mask_history: bool = True
    batch_users: int = Field(1024, ge=1)
    item_chunk: int = Field(65536, ge=1)
    popularity_groups: int = Field(4, ge=1)  # quantile groups after group 0 (cold items)
