"""The training loop shared by every model: AdamW with no-decay groups, clipping, mixed precision
(`amp`: CUDA, and bf16 on CPUs that have it), per-epoch validation with the shared full-ranking
evaluator (always fp32), modality retention, early stopping, best checkpoint and train_log.tsv.
Runs single-process or data-parallel under torchrun.

An interrupted run (killed, preempted, out of time) resumes where it stopped: after every epoch
`resume.pt` holds the weights, optimizer, early-stopping state, log rows and RNG states, and the
next run of the same training (same data, features, teachers and settings, up to the epoch cap
and patience) continues from it, ending with the same weights an uninterrupted run would have.
It is deleted when training ends.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import torch
from tqdm import tqdm

from mmrec.data.sequences import EvalSplit, SeqBatch, trim_padding
from mmrec.io import atomic_path
from mmrec.metrics.breakdown import grouped_metrics, popularity_groups
from mmrec.metrics.formulas import metrics_from_ranks
from mmrec.metrics.params import POPULARITY_GROUPS, MaskHistory
from mmrec.metrics.ranking import rank_model
from mmrec.metrics.retention import modality_retention, retention_pairs
from mmrec.models.base import ModelContext, SeqRecModel
from mmrec.models.checkpoint import CHECKPOINT_FILE, save_checkpoint, save_torch
from mmrec.models.context import context_summary
from mmrec.train import ddp
from mmrec.train.params import TrainCommon

LOG_FILE = "train_log.tsv"
RESUME_FILE = "resume.pt"
#: train.common settings a resumed run may change: when to stop, and how many threads do the work.
RESUMABLE_CHANGES = ("epochs", "patience", "threads", "num_workers", "resume")


@dataclass
class EvalSettings:
    """How validation ranks (mirrors the `evaluate` params section)."""

    ks: Sequence[int] = (5, 10, 20)
    mask_history: MaskHistory = "none"
    batch_users: int = 1024
    item_chunk: int = 65536
    popularity_groups: int = POPULARITY_GROUPS   # cold + this many quantile groups


@dataclass
class TrainResult:
    best_epoch: int
    best_metric: float
    epochs_run: int
    stopped_early: bool
    seconds: float
    log: list[dict[str, Any]] = field(default_factory=list)


def set_lrs(optimizer: torch.optim.Optimizer, model: SeqRecModel, epoch: int) -> None:
    """Each group's lr = its base lr x the model's per-group scale for this epoch (KDSR's
    asynchronous learning); models without `group_lr_scale` keep the base lr."""
    scale_fn = getattr(model, "group_lr_scale", None)
    for g in optimizer.param_groups:
        scale = scale_fn(g.get("name", ""), epoch) if scale_fn is not None else 1.0
        g["lr"] = g["base_lr"] * scale


def make_optimizer(model: SeqRecModel, lr: float, weight_decay: float) -> torch.optim.Optimizer:
    groups = [g for g in model.param_groups(lr, weight_decay) if g["params"]]
    for g in groups:
        g["base_lr"] = g["lr"]
    return torch.optim.AdamW(groups, lr=lr, weight_decay=weight_decay)


def epoch_order(n: int, seed: int, epoch: int) -> torch.Tensor:
    """This rank's example order for one epoch: a seeded permutation, sharded by
    DistributedSampler under DDP (each rank sees a disjoint, equal-size part)."""
    if ddp.is_distributed():
        from torch.utils.data import DistributedSampler

        sampler = DistributedSampler(range(n), shuffle=True, seed=seed, drop_last=False)
        sampler.set_epoch(epoch)
        return torch.tensor(list(iter(sampler)), dtype=torch.long)
    gen = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=gen)


def cpu_bf16_supported() -> bool:
    """Whether this CPU runs bf16 matmuls natively (oneDNN with AMX or AVX512-BF16); elsewhere
    bf16 autocast is emulated and slower than fp32."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a build without oneDNN's bf16 query
        return False


def _autocast(device: torch.device, amp: str):
    """(autocast context, GradScaler or None) for `train.common.amp` on `device`: bf16 autocast on
    CUDA where supported, else fp16 with a GradScaler (`cuda` and `cuda+cpu`); bf16 on a CPU with
    native bf16 (`cuda+cpu` only); otherwise nothing. Master weights and optimiser state stay fp32."""
    if device.type == "cuda" and amp in ("cuda", "cuda+cpu"):
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        scaler = torch.amp.GradScaler("cuda") if dtype == torch.float16 else None
        return torch.autocast("cuda", dtype=dtype), scaler
    if device.type == "cpu" and amp == "cuda+cpu" and cpu_bf16_supported():
        return torch.autocast("cpu", dtype=torch.bfloat16), None
    return contextlib.nullcontext(), None


def retention_row(model: SeqRecModel, ctx: ModelContext, pairs: dict[str, torch.Tensor]) -> dict[str, float]:
    """`retention_<table>_<modality>` for every model table x present modality."""
    out: dict[str, float] = {}
    with torch.no_grad():
        was = model.training
        model.eval()
        tables = model.retention_tables()
        model.train(was)
        for tname, table in tables.items():
            for m, feats in sorted(ctx.features.items()):
                out[f"retention_{tname}_{m}"] = modality_retention(table, feats.vector, pairs[m])
    return out


def diagnostics_row(model: SeqRecModel, seq: torch.Tensor, epoch: int) -> dict[str, float]:
    """The model's once-per-epoch diagnostics (e.g. KDSR's gradient shares, see
    `SeqRecModel.diagnostics`) on one training batch `seq`, without touching the training
    trajectory: the RNG state is restored afterwards and no `.grad` is written."""
    devices = [seq.device] if seq.device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return model.diagnostics(SeqBatch(seq), epoch)


def validation_row(ranks: torch.Tensor, targets: torch.Tensor, item_pop: torch.Tensor,
                   ks: Sequence[int], n_groups: int) -> dict[str, float]:
    """`valid_<metric>` over every target, plus `valid_cold_recall@K` (targets never seen in
    training) and `valid_q1_recall@K` (the least popular quantile of the warm items), grouped as
    the evaluate stage's popularity breakdown (mmrec.metrics.breakdown), so selection can see
    the long tail. A group without targets has no column (train_log.tsv writes nan there)."""
    row = {f"valid_{k}": v for k, v in metrics_from_ranks(ranks.cpu(), ks).items()}
    target_group = popularity_groups(item_pop, n_groups)[targets.cpu().long()]
    for g in grouped_metrics(ranks, target_group, 2, ks):              # groups 0 (cold) and 1 (Q1)
        name = "cold" if g["group"] == 0 else "q1"
        if g["n_users"]:
            row.update({f"valid_{name}_recall@{k}": g[f"recall@{k}"] for k in ks})
    return row


#: Wall-clock columns of a log row: kept in TrainResult.log (benchmarks read them), never in
#: train_log.tsv, a DVC output whose bytes must repeat for a fresh clone's dvc.lock to hold.
TIMING_KEYS = ("train_seconds", "epoch_seconds")


def write_log(rows: list[dict[str, Any]], path: Path) -> None:
    """train_log.tsv (atomically rewritten each epoch): the union of keys in first-seen order,
    without the wall-clock columns (TIMING_KEYS)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols and k not in TIMING_KEYS]

    def fmt(v: Any) -> str:
        if v is None or (isinstance(v, float) and math.isnan(v)):
            return "nan"
        return repr(float(v)) if isinstance(v, float) else str(v)

    with atomic_path(path) as tmp:
        tmp.write_text("\t".join(cols) + "\n" + "".join(
            "\t".join(fmt(r.get(c)) for c in cols) + "\n" for r in rows))


def run_fingerprint(model: SeqRecModel, ctx: ModelContext, train_seq: torch.Tensor, valid: Optional[EvalSplit],
                    common: TrainCommon, *, seed: int, arch: str, name: str, config: dict[str, Any]) -> str:
    """sha256 of everything that decides a training run's trajectory: the settings (but
    RESUMABLE_CHANGES), the context, the training windows and validation split, and the model's
    buffers before training (frozen features and teacher signals live there)."""
    settings = {k: v for k, v in common.model_dump().items() if k not in RESUMABLE_CHANGES}
    h = hashlib.sha256(json.dumps({"arch": arch, "name": name, "config": config, "common": settings, "seed": seed,
                                   "context": context_summary(ctx)}, sort_keys=True, default=str).encode())
    tensors = [train_seq, ctx.item_pop, *(t for _, t in sorted(model.named_buffers()))]
    if valid is not None:
        tensors += [valid.histories, valid.full_history, valid.targets]
    for t in tensors:
        h.update(str((tuple(t.shape), t.dtype)).encode())
        h.update(t.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def load_resume_state(path: Path, fingerprint: str) -> Optional[dict[str, Any]]:
    """The state an interrupted run saved at `path` when it belongs to this run (same
    fingerprint), else None (a stale file from another run is ignored and later replaced)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - a truncated or foreign file: start afresh
        return None
    return state if isinstance(state, dict) and state.get("fingerprint") == fingerprint else None


def _save_best(model: SeqRecModel, ctx: ModelContext, out_dir: Path, epoch: int, rows: list[dict[str, Any]], *,
               arch: str, name: str, config: dict[str, Any]) -> None:
    """model.pt of the current weights as the best checkpoint of `epoch` (its valid metrics from `rows`)."""
    row = next(r for r in rows if r["epoch"] == epoch)
    save_checkpoint(out_dir / CHECKPOINT_FILE, model, arch=arch, name=name, config=config, ctx=ctx,
                    extra={"epoch": epoch, "valid": {k: v for k, v in row.items() if k.startswith("valid_")}})


def retention_sample(ctx: ModelContext, common: TrainCommon, seed: int) -> dict[str, torch.Tensor]:
    """The fixed item pairs of each modality that every epoch's retention columns compare."""
    return {m: retention_pairs(f.has_feature.cpu(), common.retention_pairs, seed) for m, f in ctx.features.items()}


def model_row(model: SeqRecModel, ctx: ModelContext, valid: Optional[EvalSplit],
                   eval_settings: EvalSettings, pairs: dict[str, torch.Tensor]) -> dict[str, float]:
    """What a log row says of the model as it stands: its validation metrics (when there is a
    validation split) and its retention columns."""
    row = validation_columns(model, ctx, valid, eval_settings) if valid is not None else {}
    row.update(retention_row(model, ctx, pairs))
    return row


def validation_columns(model: SeqRecModel, ctx: ModelContext, valid: EvalSplit,
                       eval_settings: EvalSettings) -> dict[str, float]:
    """The `valid_*` columns of a log row (validation_row) of the model as it stands."""
    ranks = rank_model(model, valid.histories, valid.targets, mask_history=eval_settings.mask_history,
                       mask_items=valid.full_history, device=ctx.device,
                       batch_users=eval_settings.batch_users, item_chunk=eval_settings.item_chunk)
    return validation_row(ranks, valid.targets, ctx.item_pop, eval_settings.ks, eval_settings.popularity_groups)


def selection_score(row: dict[str, Any], select_metric: str) -> float:
    """The row's `valid_<select_metric>`; a metric validation does not compute is an error."""
    score = row.get(f"valid_{select_metric}", None)
    if score is None:
        raise KeyError(f"select_metric {select_metric!r} is not among the valid "
                       f"metrics: {', '.join(k for k in row if k.startswith('valid_'))}")
    return score


def keep_untrained(model: SeqRecModel, ctx: ModelContext, valid: Optional[EvalSplit], common: TrainCommon,
                   out_dir: Path, *, seed: int, arch: str, name: str, config: dict[str, Any],
                   eval_settings: EvalSettings = EvalSettings()) -> TrainResult:
    """A model with nothing to train (`trainable = False`): validated once, saved as the best
    checkpoint of epoch 0, with the same log row and checkpoint a trained model gets."""
    t0 = time.perf_counter()
    model.to(ctx.device).eval()
    row: dict[str, Any] = {"epoch": 0}
    best = math.nan
    if ddp.rank() == 0:
        (Path(out_dir) / RESUME_FILE).unlink(missing_ok=True)      # an earlier trainable run's
        row.update(model_row(model, ctx, valid, eval_settings, retention_sample(ctx, common, seed)))
        if valid is not None:
            best = selection_score(row, common.select_metric)
        row["train_seconds"] = 0.0
        row["epoch_seconds"] = time.perf_counter() - t0
        _save_best(model, ctx, Path(out_dir), 0, [row], arch=arch, name=name, config=config)
        write_log([row], Path(out_dir) / LOG_FILE)
    ddp.barrier()
    return TrainResult(best_epoch=0, best_metric=best, epochs_run=0, stopped_early=False,
                       seconds=time.perf_counter() - t0, log=[row])


def train_model(model: SeqRecModel, ctx: ModelContext, train_seq: torch.Tensor,
                valid: Optional[EvalSplit], common: TrainCommon, out_dir: Path, *,
                seed: int, arch: str, name: str, config: dict[str, Any],
                eval_settings: EvalSettings = EvalSettings(), progress: bool = True) -> TrainResult:
    """Train `model` on windows `train_seq` [U, S+1]; keep the best valid checkpoint in out_dir.

    Every rank runs the same code; only rank 0 evaluates and writes, and its early-stopping
    decision is broadcast. Without `valid` the last epoch is kept. With `common.resume`, a
    `resume.pt` of this same run in out_dir (see the module docstring) is continued.
    """
    if not model.trainable:
        return keep_untrained(model, ctx, valid, common, out_dir, seed=seed, arch=arch, name=name,
                              config=config, eval_settings=eval_settings)
    device = ctx.device
    is_main = ddp.rank() == 0
    model.to(device).train()
    module = ddp.wrap_for_training(model, device)
    opt = make_optimizer(model, common.lr, common.weight_decay)
    autocast, scaler = _autocast(device, common.amp)
    params = [p for g in opt.param_groups for p in g["params"]]
    pairs = retention_sample(ctx, common, seed)
    out_dir = Path(out_dir)
    rows: list[dict[str, Any]] = []
    best, best_epoch, bad, stopped = -math.inf, 0, 0, False
    n = int(train_seq.shape[0])
    start_all = time.perf_counter()
    first = 0
    best_state: dict[str, torch.Tensor] = {}
    resume_path = out_dir / RESUME_FILE
    fingerprint = (run_fingerprint(model, ctx, train_seq, valid, common, seed=seed, arch=arch, name=name,
                                   config=config) if common.resume else "")
    state = load_resume_state(resume_path, fingerprint) if common.resume else None
    if state is not None:
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if scaler is not None and state.get("scaler") is not None:
            scaler.load_state_dict(state["scaler"])
        rows, best, best_epoch, bad = state["rows"], state["best"], state["best_epoch"], state["bad"]
        first = state["epoch"]
        best_state = state["best_model"]
        _set_rng_state(state["rng"])
        if is_main:
            # DVC deletes model.pt before it re-runs the stage: write the best epoch's back.
            model.load_state_dict(best_state)
            _save_best(model, ctx, out_dir, best_epoch, rows, arch=arch, name=name, config=config)
            model.load_state_dict(state["model"])
        # the stopping rule is re-applied: a larger patience or epoch cap lets the run go on
        stopped = bad >= common.patience
    epoch = first
    for epoch in range(first + 1, (first if stopped else common.epochs) + 1):
        t0 = time.perf_counter()
        set_lrs(opt, model, epoch)
        order = epoch_order(n, seed, epoch)
        batches = order.split(common.batch_size)
        sums: dict[str, float] = {}
        bar = tqdm(batches, desc=f"{name} epoch {epoch}", leave=False, disable=not (progress and is_main))
        diag_seq: Optional[torch.Tensor] = None
        for idx in bar:
            seq = trim_padding(train_seq[idx]).to(device, non_blocking=True)
            diag_seq = seq if diag_seq is None else diag_seq
            with autocast:
                loss, comps = module(seq, epoch)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"model {name!r}: non-finite loss at epoch {epoch} ({comps})")
            opt.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(opt)
                torch.nn.utils.clip_grad_norm_(params, common.grad_clip)
                scaler.step(opt)
                scaler.update()
            else:
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, common.grad_clip)
                opt.step()
            comps = {"loss": float(loss.detach()), **comps}
            for k, v in comps.items():
                sums[k] = sums.get(k, 0.0) + v
            bar.set_postfix(loss=f"{comps['loss']:.4f}")
        train_time = time.perf_counter() - t0
        row: dict[str, Any] = {"epoch": epoch}
        row.update({k: v / max(len(batches), 1) for k, v in sums.items()})
        if diag_seq is not None:  # every rank: a model's loss may gather across ranks
            row.update(diagnostics_row(model, diag_seq, epoch))
        decision = None
        if is_main:
            row.update(model_row(model, ctx, valid, eval_settings, pairs))
            row["lr"] = opt.param_groups[0]["lr"]
            row["train_seconds"] = train_time
            row["epoch_seconds"] = time.perf_counter() - t0
            rows.append(row)
            score = selection_score(row, common.select_metric) if valid is not None else float(epoch)
            if score > best:
                best, best_epoch, bad = score, epoch, 0
                _save_best(model, ctx, out_dir, epoch, rows, arch=arch, name=name, config=config)
                if common.resume:
                    best_state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
            else:
                bad += 1
            write_log(rows, out_dir / LOG_FILE)
            decision = bad >= common.patience
            if common.resume:
                save_torch({"fingerprint": fingerprint, "epoch": epoch, "model": model.state_dict(),
                            "optimizer": opt.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                            "rows": rows, "best": best, "best_epoch": best_epoch, "bad": bad,
                            "best_model": best_state, "rng": _rng_state()}, resume_path)
        stopped = bool(ddp.broadcast_object(decision))
        if stopped:
            break
    ddp.barrier()
    if is_main:
        resume_path.unlink(missing_ok=True)
    return TrainResult(best_epoch=best_epoch, best_metric=best, epochs_run=epoch,
                       stopped_early=stopped, seconds=time.perf_counter() - start_all, log=rows)
