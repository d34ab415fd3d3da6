"""model.pt: save the best weights with everything needed to rebuild the model, and load them."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import torch

from mmrec.io import atomic_path
from mmrec.models.base import ModelContext, SeqRecModel
from mmrec.models.context import ContextConfig, build_context, context_summary

CHECKPOINT_FILE = "model.pt"
FORMAT_VERSION = 1


def save_checkpoint(path: Path, model: SeqRecModel, *, arch: str, name: str, config: dict[str, Any],
                    ctx: ModelContext, extra: Optional[dict[str, Any]] = None) -> Path:
    """Write model.pt atomically: {state_dict, arch, name, config, context, ...extra}.

    Only tensors and plain Python values, so `torch.load(weights_only=True)` reads it. Frozen
    features are non-persistent buffers of the models, so they are not copied into the file.
    """
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format_version": FORMAT_VERSION, "state_dict": state, "arch": arch, "name": name,
               "config": config, "context": context_summary(ctx), **(extra or {})}
    return save_torch(payload, path)


def save_torch(payload: Any, path: Path) -> Path:
    """torch.save `payload` to `path` atomically, byte-reproducibly.

    torch names the zip archive's root folder after a file *name* it is given, and atomic_path's
    temp names are random; saving through a file object makes torch use the fixed name "archive",
    so the same payload gives the same bytes (and DVC hashes) on every run.
    """
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        torch.save(payload, f)
    return Path(path)


def read_checkpoint(path: Path) -> dict[str, Any]:
    """The raw checkpoint dict (weights_only: no code is unpickled)."""
    path = Path(path)
    if path.is_dir():
        path = path / CHECKPOINT_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run the train stage for this model)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("state_dict", "arch", "config", "context"):
        if key not in ckpt:
            raise ValueError(f"{path}: not an mmrec checkpoint (missing {key!r})")
    return ckpt


def load_model(model_dir: Path, params: ContextConfig, device: torch.device | str = "cpu",
               root: Optional[Path] = None, ckpt: Optional[dict[str, Any]] = None) -> SeqRecModel:
    """Rebuild a trained model from `<model_dir>/model.pt` and the pipeline's artifacts.

    Every architecture setting (the model config, max_len included) comes from the checkpoint;
    params.yaml only locates the data, and feature encoders that differ from the checkpoint's
    are an error. The ModelContext is rebuilt from items.parquet and the checkpoint's modalities
    (and KDSR teachers when the model needs them); `root` defaults to the project root implied
    by the layout `<root>/data/<name>/models/<model>`. `ckpt`: that file's contents when the
    caller has already read them. Returns the model in eval mode on `device`, wrapped in its
    content prior when the checkpoint chose one (mmrec.models.content_prior).
    """
    from mmrec.models.content_prior import with_content_prior
    from mmrec.models.registry import build_model, model_class

    model_dir = Path(model_dir)
    if ckpt is None:
        ckpt = read_checkpoint(model_dir)
    root = Path(root) if root is not None else model_dir.resolve().parents[3]
    arch, summary = ckpt["arch"], ckpt["context"]
    cls = model_class(arch)
    ctx = build_context(params, device, root, max_len=int(summary["max_len"]),
                        tokens=cls.wants_tokens(dict(ckpt["config"])),
                        modalities=summary["modalities"], teachers=bool(cls.needs_teacher))
    if ctx.n_items != int(summary["n_items"]):
        raise ValueError(f"{model_dir / CHECKPOINT_FILE}: trained on {summary['n_items']} items but "
                         f"items.parquet now has {ctx.n_items}; re-run the train stage")
    now = context_summary(ctx)
    for key in ("encoders", "feature_dims"):  # the frozen inputs are part of the architecture
        if key in summary and dict(summary[key]) != now[key]:
            raise ValueError(f"{model_dir / CHECKPOINT_FILE}: trained with feature {key} {summary[key]} "
                             f"but params.yaml's extract settings give {now[key]}; re-run the train stage")
    model = build_model(arch, ctx, dict(ckpt["config"]), section=ckpt.get("name"))
    model.load_state_dict(ckpt["state_dict"])
    # the content prior chosen when training ended (mmrec.train.prior) is part of the model
    beta = float((ckpt.get("content_prior") or {}).get("beta", 0.0))
    return with_content_prior(model.to(ctx.device), ctx, beta).eval()


def model_max_len(model: torch.nn.Module) -> int:
    """Input positions of a loaded model: the `max_len` its checkpoint was trained with (its
    stored config), never params.yaml's, which may have changed since."""
    cfg = getattr(model, "cfg", None)
    if cfg is None or not hasattr(cfg, "max_len"):
        raise TypeError(f"{type(model).__name__} keeps no config with max_len (.cfg.max_len)")
    return int(cfg.max_len)
