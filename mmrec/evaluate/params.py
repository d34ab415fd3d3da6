"""What the evaluate stage reads of params.yaml; the `evaluate` section's schema itself is
`mmrec.metrics.params.EvaluateParams` (model selection in `train` reads it too)."""

from __future__ import annotations

from typing import Any, Protocol

from mmrec.data.params import DataParams
from mmrec.features.params import ExtractParams
from mmrec.metrics.params import EvaluateParams


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
