"""Build the ModelContext a model is constructed with, from the pipeline's artifacts."""

from __future__ import annotations

import dataclasses

from pathlib import Path
from typing import Any, Iterable, Optional, Protocol

import torch

from mmrec import paths
from mmrec.data.items import load_item_pop
from mmrec.data.params import DataParams
from mmrec.features.params import ExtractParams
from mmrec.features.types import ModalityFeatures
from mmrec.models.base import ModelContext

MODALITIES = ("text", "image")


class ContextConfig(Protocol):
    """The sections of params.yaml a model context is built from (`mmrec.config.ContextConfig` fits).
    `train` is only read for `train.common.max_len`, the default input length."""

    data: DataParams
    extract: ExtractParams
    train: Any


def present_modalities(params: ContextConfig, root: Path) -> list[str]:
    """Modalities whose features exist for the configured encoders.

    A modality must be either extracted or recorded absent by its extraction (a dataset without
    pictures): one that is neither (extraction not run, failed, or run with another encoder)
    raises, so a "multimodal" model never trains on fewer modalities than the data has.
    """
    status = {m: paths.modality_status(params, m, root) for m in MODALITIES}
    missing = [m for m, s in status.items() if s == "missing"]
    if missing:
        required = set(getattr(params.data, "require", []) or [])
        why = " (required by data.require)" if required & set(missing) else ""
        raise FileNotFoundError(
            f"features for {', '.join(missing)}{why} not found: no "
            f"{', '.join(str(paths.feature_path(params, m, root)) for m in missing)} and no record that "
            f"the dataset lacks them; run the extract stage (`dvc repro extract@{missing[0]}`)")
    return [m for m in MODALITIES if status[m] == "present"]


def read_features(path: Path, n_items: int, tokens: bool) -> ModalityFeatures:
    """One modality's features via the feature store (mmrec.features.store.load_features)."""
    from mmrec.features.store import load_features

    feats = load_features(path, tokens=tokens)
    if feats.n_items != n_items:
        raise ValueError(f"{path}: features cover {feats.n_items} items but items.parquet has {n_items}; "
                         "re-run the extract stage")
    return feats


def place_features(feats: ModalityFeatures, device: torch.device) -> ModalityFeatures:
    """Pooled vectors and masks on `device`; token states stay on the CPU, where the models'
    token stores (mmrec.models.tokens.TokenStore) keep them pinned and move each batch's rows.
    The whole [N+1, T, d] tensor never goes to the GPU."""
    tokens, token_mask = feats.tokens, feats.token_mask
    if tokens is not None and token_mask is not None:
        tokens, token_mask = tokens.detach().cpu(), token_mask.detach().cpu()
    return ModalityFeatures(feats.vector.to(device), feats.has_feature.to(device), tokens, token_mask,
                            feats.encoder)


def build_context(params: ContextConfig, device: torch.device | str = "cpu", root: Path = Path("."), *,
                  max_len: Optional[int] = None, tokens: bool = False,
                  modalities: Optional[Iterable[str]] = None, teachers: bool = True) -> ModelContext:
    """ModelContext from items.parquet (n_train), the present modalities' features and, with
    `teachers`, the KDSR teachers whose folders exist.

    max_len:    input positions (default `train.common.max_len`).
    tokens:     also load token states (ODMT); pooled vectors otherwise.
    modalities: restrict to these (a checkpoint's); None = every modality with features.
    """
    root = Path(root)
    device = torch.device(device)
    item_pop = load_item_pop(paths.ingest_dir(params, root) / "items.parquet")
    n_items = int(item_pop.shape[0]) - 1
    if modalities is not None:
        wanted = list(modalities)
        missing = [m for m in wanted if paths.modality_status(params, m, root) != "present"]
        if missing:
            raise FileNotFoundError(
                f"features for {', '.join(missing)} not found under {paths.features_dir(params, root)} "
                "(run the extract stage with the same encoders)")
        present = [m for m in MODALITIES if m in wanted]
    else:
        present = present_modalities(params, root)
    features = {m: place_features(read_features(paths.feature_path(params, m, root), n_items, tokens), device)
                for m in present}
    found_teachers = {}
    if teachers:
        from mmrec.teacher import load_teacher

        for m in present:
            tdir = paths.teacher_modality_dir(params, m, root)
            if tdir.exists():
                found_teachers[m] = load_teacher(tdir, device)
    world = torch.distributed.get_world_size() if (
        torch.distributed.is_available() and torch.distributed.is_initialized()) else 1
    return ModelContext(n_items=n_items, max_len=max_len or params.train.common.max_len,
                        item_pop=item_pop.to(device), features=features, teachers=found_teachers,
                        device=device, world_size=world)


def without_tokens(ctx: ModelContext) -> ModelContext:
    """`ctx` without token states: what a built model's context still needs (pooled vectors,
    masks, popularity, teachers). A token model keeps its own copies (mmrec.models.tokens.
    TokenStore: pooled grids, float16, pinned with CUDA), so keeping the context's full
    [N+1, T, d] tensors alive through training would hold them twice."""
    feats = {m: dataclasses.replace(f, tokens=None, token_mask=None) for m, f in ctx.features.items()}
    return dataclasses.replace(ctx, features=feats)


def context_summary(ctx: ModelContext) -> dict:
    """What a checkpoint records about its context (JSON-friendly)."""
    return {
        "n_items": ctx.n_items,
        "max_len": ctx.max_len,
        "modalities": sorted(ctx.features),
        "feature_dims": {m: f.dim for m, f in sorted(ctx.features.items())},
        "encoders": {m: f.encoder for m, f in sorted(ctx.features.items())},
        "teachers": sorted(ctx.teachers),
    }
