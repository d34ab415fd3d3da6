"""mmrec.models: the model registry, every recommender, their checkpoints and build context.

Layer: may import `objectives`, `teacher`, `features`, `data` and the bottom layer, never
`train`, `evaluate` or `config`.
"""

from mmrec.models.registry import MODELS, build_model  # noqa: F401
