"""Model registry: every recommender is built by name from `train.models`."""

from mmrec.models.registry import MODELS, build_model  # noqa: F401
