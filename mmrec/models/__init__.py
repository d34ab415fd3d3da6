"""mmrec.models: the model registry, every recommender, their checkpoints and build context.

Layer: may import `objectives`, `teacher`, `features`, `data` and the bottom layer, never
`train`, `evaluate` or `config`.
"""

from typing import Any


def __getattr__(name: str) -> Any:
    # Lazy: `mmrec.models.configs` (the settings every params load validates) must import
    # without pulling in torch through the registry.
    if name in ("MODELS", "build_model"):
        from mmrec.models import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'mmrec.models' has no attribute {name!r}")
