"""The model registry and factory (`build_model("sasrec", ctx, cfg)`)."""

from __future__ import annotations

import importlib
from typing import Any

from pydantic import ValidationError

from mmrec.models.base import ModelContext, SeqRecModel
from mmrec.registry import Registry

MODELS: Registry[SeqRecModel] = Registry("model")

# Modules that register models on import. Kept explicit so the registry is complete before any
# lookup and a missing module fails loudly.
_MODEL_MODULES = ("sasrec", "gru4rec", "fusion", "kdsr", "odmt", "content_knn")


# Model modules absent from this checkout (a module still being written); reported by lookups.
_MISSING: dict[str, str] = {}


def _load_all() -> None:
    for mod in _MODEL_MODULES:
        name = f"mmrec.models.{mod}"
        try:
            importlib.import_module(name)
        except ModuleNotFoundError as err:
            # Only the listed module itself may be absent; a missing dependency inside a model
            # module is a real error and propagates.
            if err.name != name:
                raise
            _MISSING[mod] = str(err)


def model_class(arch: str) -> type[SeqRecModel]:
    """The registered class of model `arch` (unknown name -> KeyError listing the known)."""
    _load_all()
    return MODELS.get(arch)  # type: ignore[return-value]


def model_names() -> list[str]:
    _load_all()
    return MODELS.names()


def build_model(arch: str, ctx: ModelContext, cfg: dict[str, Any], section: str | None = None) -> SeqRecModel:
    """Build registered model `arch` from its raw config mapping.

    The mapping is validated by the model's `config_cls`; errors name `train.<section>.<key>`.
    """
    _load_all()
    if arch not in MODELS and _MISSING:
        raise KeyError(f"unknown model {arch!r}; known: {', '.join(MODELS.names())} "
                       f"(modules not importable: {', '.join(sorted(_MISSING))})")
    cls = MODELS.get(arch)
    config_cls = getattr(cls, "config_cls", None)
    if config_cls is None:
        raise TypeError(f"model {arch!r} has no config_cls")
    try:
        config = config_cls.model_validate(cfg)
    except ValidationError as err:
        where = f"train.{section or arch}"
        problems = "; ".join(
            f"{where}.{'.'.join(map(str, e['loc']))}: "
            f"{'unknown key' if e['type'] == 'extra_forbidden' else e['msg']}"
            for e in err.errors())
        raise ValueError(f"invalid settings for model {arch!r}: {problems}") from None
    return cls(with_whitened_features(ctx, list(getattr(config, "whiten", []))), config)


def with_whitened_features(ctx: ModelContext, modalities: list[str]) -> ModelContext:
    """`ctx` with the features of `modalities` whitened (mmrec.models.tokens.whiten_features),
    recomputed from the frozen features whenever a model is built (and so when a checkpoint
    loads); the context the training loop keeps (retention) is not changed."""
    if not modalities:
        return ctx
    import dataclasses

    from mmrec.models.tokens import whiten_features

    missing = [m for m in modalities if m not in ctx.features]
    if missing:
        raise ValueError(f"whiten: modality {', '.join(missing)} has no features "
                         f"(present: {', '.join(sorted(ctx.features)) or 'none'})")
    feats = {m: whiten_features(f) if m in modalities else f for m, f in ctx.features.items()}
    return dataclasses.replace(ctx, features=feats)
