"""Schema of the `recommend` section of params.yaml, and what the recommend stage reads."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import Field

from mmrec.data.params import DataParams
from mmrec.features.params import ExtractParams
from mmrec.schema import StrictParams
from mmrec.serving.index import DEFAULT_MASK_HISTORY


class RecommendParams(StrictParams):
    """The `recommend` section: what `recommend@<model>` exports for serving."""

    # Items per user in recommendations.parquet; `mmrec recommend -k` up to this reads the file.
    k: int = Field(50, ge=1)
    # Serving does not recommend what a user already has (their whole known history, train +
    # valid + test); false keeps those items in the ranking. Unlike evaluate.mask_history there
    # is no target, so the setting is on or off.
    mask_history: bool = DEFAULT_MASK_HISTORY
    # Users scored per matmul: the working set is batch_users x (N+1) float32 scores.
    batch_users: int = Field(512, ge=1)
    # Users (items in item_vectors.parquet) per Parquet row group: a lookup reads one group of
    # each file (row_group_size x k rows of recommendations.parquet).
    row_group_size: int = Field(64, ge=1)


class RecommendConfig(Protocol):
    """What the recommend stage reads (`mmrec.config.Params` fits): the sections the model is
    rebuilt from (`mmrec.models.context.ContextConfig`), the device, and `recommend`."""

    device: str
    data: DataParams
    extract: ExtractParams
    train: Any
    recommend: RecommendParams
