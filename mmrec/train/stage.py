"""The train stage: `run(params, root, model)` trains one `train.models` entry (or all of them)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional

from mmrec import paths
from mmrec.io import pick_device, seed_everything
from mmrec.train import ddp, entries
from mmrec.train.repro import make_repeatable
from mmrec.train.params import TrainCommon, TrainConfig


def resolve_entry(params: TrainConfig, entry: str) -> tuple[str, TrainCommon, dict[str, Any]]:
    """(arch, loop settings, raw model config) of `train.<entry>` (see mmrec.train.entries)."""
    e = entries.resolve_entry(params.train, entry)
    return e.arch, e.common, e.config


def reads_features(cls: type) -> bool:
    """Whether a model reads modality features: its config declares `modalities` (fusion, KDSR,
    ODMT). ID-only models (SASRec, GRU4Rec) load none, not even for the retention columns of the
    train log, so that in dvc.yaml they depend on no feature folder and a new encoder never
    retrains them."""
    return "modalities" in getattr(getattr(cls, "config_cls", None), "model_fields", {})


def check_requirements(entry: str, cls: type, ctx) -> None:
    """Fail before training when the dataset lacks what the model needs (named in the error)."""
    missing = [m for m in getattr(cls, "required_modalities", ()) if m not in ctx.features]
    if missing:
        raise ValueError(f"model {entry!r} needs modality {', '.join(missing)} but the dataset has "
                         f"only: {', '.join(sorted(ctx.features)) or 'no modality features'}")
    if getattr(cls, "needs_teacher", False) and not ctx.teachers:
        raise ValueError(f"model {entry!r} needs a KDSR teacher but no teacher folder exists for "
                         f"modalities {', '.join(sorted(ctx.features)) or '(none)'}; run the teacher stage")


def train_entry(params: TrainConfig, entry: str, root: Path = Path("."), progress: bool = True) -> dict[str, Any]:
    """Train one `train.models` entry; writes models/<entry>/model.pt and train_log.tsv."""
    from mmrec.data.sequences import load_eval_split, load_train_sequences
    from mmrec.models.context import build_context, without_tokens
    from mmrec.models.registry import build_model, model_class
    from mmrec.models.checkpoint import CHECKPOINT_FILE
    from mmrec.train.loop import EvalSettings, train_model
    from mmrec.train.prior import fit_content_prior

    t0 = time.perf_counter()
    root = Path(root)
    arch, common, cfg = resolve_entry(params, entry)
    cls = model_class(arch)
    device = ddp.init_distributed(pick_device(params.device))
    seed = common.training_seed(params.seed)
    seed_everything(seed)
    make_repeatable(common.threads)
    ctx = build_context(params, device, root, max_len=common.max_len,
                        tokens=cls.wants_tokens(cfg), modalities=None if reads_features(cls) else [],
                        teachers=bool(getattr(cls, "needs_teacher", False)))
    check_requirements(entry, cls, ctx)
    model = build_model(arch, ctx, cfg, section=entry)
    ctx = without_tokens(ctx)                                       # the model holds its own copy
    config = model_config_dump(model)

    ingest = paths.ingest_dir(params, root)
    seq, _users = load_train_sequences(ingest, common.max_len)
    usable = (seq > 0).sum(1) >= 2                                  # at least one (input, target)
    skipped = int((~usable).sum())
    seq = seq[usable]
    valid = load_eval_split(ingest, "valid", common.max_len)
    ev = params.evaluate
    eval_settings = EvalSettings(tuple(ev.ks), ev.mask_history, ev.batch_users, ev.item_chunk,
                                 ev.popularity_groups)
    result = train_model(model, ctx, seq, valid, common, paths.model_dir(params, entry, root),
                         seed=seed, arch=arch, name=entry, config=config, eval_settings=eval_settings,
                         progress=progress)
    prior = None
    setting = getattr(model.cfg, "content_prior", "off")
    if ddp.rank() == 0:
        prior = fit_content_prior(model, ctx, valid, paths.model_dir(params, entry, root) / CHECKPOINT_FILE,
                                  setting, common.select_metric, eval_settings)
    ddp.barrier()
    return {"model": entry, "arch": arch, "seed": seed, "users": int(seq.shape[0]), "skipped_short_sequences": skipped,
            "items": ctx.n_items, "modalities": sorted(ctx.features), "epochs": result.epochs_run,
            "best_epoch": result.best_epoch, f"best_valid_{common.select_metric}": result.best_metric,
            **({"content_prior_beta": prior["beta"]} if prior else {}),
            "seconds": round(time.perf_counter() - t0, 2),
            "output": str(paths.model_dir(params, entry, root))}


def model_config_dump(model) -> dict[str, Any]:
    """The model's validated config as plain values (stored in model.pt)."""
    cfg = getattr(model, "cfg", None) or getattr(model, "config", None)
    if cfg is None:
        raise TypeError(f"{type(model).__name__} keeps its config neither in .cfg nor .config")
    return cfg.model_dump(mode="json")


def run(params: TrainConfig, root: Path = Path("."), model: Optional[str] = None,
        progress: bool = True) -> dict[str, Any]:
    """Train `model` (a `train.models` entry), or every entry in order when None."""
    entries = [model] if model is not None else list(params.train.models)
    out = {e: train_entry(params, e, root, progress) for e in entries}
    return out[model] if model is not None else out
