"""The scale path (issue 26): one epoch of every default model on a synthetic dataset of the ODMT
paper's Arts size, through the library's own training loop, with its time and peak memory.

    python benchmarks/scale.py                       # Arts size, every train.models entry, CPU
    python benchmarks/scale.py --models odmt --batches 5 --device cuda
    python benchmarks/scale.py --quick               # tiny smoke run (seconds)

Data (built in memory, no file is written but the loop's checkpoint in a temp folder):
- 43,583 users x 58,900 items; each user's history length is long-tailed as in Amazon's 5-core
  files (5 + Zipf(1.8) - 1, capped at data.max_history), items drawn with a Zipf(0.8) popularity;
  leave-one-out windows as `load_train_sequences` gives them ([U, max_len + 1], left-padded).
- features of the default encoders (mmrec/features/encoders.py): text all-MiniLM-L6-v2, 384-d
  pooled + 32 tokens x 384 (padded lengths masked); image EfficientNet-Lite0, 1280-d pooled +
  1 + 7x7 tokens x 1280. Token states are float16 as the feature store holds them; they are
  random rows of one 1,024-item block repeated (the values do not change the cost, and filling
  9 GB with fresh random numbers would take longer than training).
- KDSR teachers of the real shapes: denoised [N+1, teacher.dim], codebook [codes, subspaces].

Every model gets params.yaml's real-data settings (`profiles.default` applied, as for any dataset
but the sample) resolved by mmrec.train.entries, and runs in its own process so that peak RSS
(VmHWM) is its own: `mmrec.train.loop.train_model` for `--batches` batches (one epoch over that
many windows: the loop's optimizer, clipping, AMP, retention row and checkpoint), then the
validation ranking (`mmrec.metrics.ranking.evaluate_model`) over `--valid-users` users. The full
epoch is extrapolated: batches per epoch x time per batch, plus the epoch's fixed cost (the
retention row), plus validation = catalogue encoding (`item_repr`, once) + per-user scoring x users.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ARTS = {"users": 43_583, "items": 58_900}
FULL = {**ARTS, "batches": 5, "valid_users": 2048}
QUICK = {"users": 300, "items": 400, "batches": 2, "valid_users": 128}
TEXT = {"dim": 384, "tokens": 32}                 # sentence-transformers:all-MiniLM-L6-v2
IMAGE = {"dim": 1280, "tokens": 1 + 7 * 7}        # efficientnet-lite0: pooled + 7x7 grid
TOKEN_BLOCK = 1024                                # distinct random token rows, tiled over items


def vm_hwm_mb() -> float:
    """Peak resident memory of this process image in MiB (VmHWM: unlike ru_maxrss, it does not
    carry over the forking parent's peak)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def real_data_params(root: Path = ROOT):
    """params.yaml with `profiles.default` applied (the data name is not the sample's)."""
    import yaml

    from mmrec.config import parse_params

    raw = yaml.safe_load((root / "params.yaml").read_text())
    raw["data"]["name"] = "scale_synthetic"
    return parse_params(raw, "params.yaml (data.name: scale_synthetic)")


def synthetic_sequences(users: int, items: int, max_history: int, seed: int):
    """[U, max_history] left-padded item ids (most recent last) with long-tailed lengths >= 5,
    and the lengths [U]."""
    import numpy as np
    import torch

    rng = np.random.default_rng(seed)
    lengths = np.minimum(4 + rng.zipf(1.8, size=users), max_history)            # 5..max_history
    p = 1.0 / np.arange(1, items + 1) ** 0.8
    ids = rng.choice(items, size=(users, max_history), p=p / p.sum()) + 1
    pad = np.arange(max_history)[None, :] < (max_history - lengths)[:, None]
    ids[pad] = 0
    return torch.from_numpy(ids), torch.from_numpy(lengths)


def windows(full, max_len: int):
    """Leave-one-out from left-padded histories [U, H]: training windows [U, max_len + 1] (all but
    the last two items) and the validation split (input = the same items, target = second last)."""
    import torch

    from mmrec.data.sequences import EvalSplit

    before_valid = full[:, :-2]                                       # [U, H-2], still left-padded
    train = before_valid[:, -(max_len + 1):]
    if train.shape[1] < max_len + 1:
        train = torch.nn.functional.pad(train, (max_len + 1 - train.shape[1], 0))
    valid = EvalSplit(torch.arange(full.shape[0]), before_valid[:, -max_len:], before_valid, full[:, -2])
    return train, valid


def tiled_tokens(n_rows: int, n_tok: int, dim: int, g, lengths=None):
    """[n_rows, T, d] float16 token states (a random block repeated) and their [n_rows, T] mask:
    all real, or the first `lengths[i]` tokens of row i."""
    import torch

    block = torch.randn(min(TOKEN_BLOCK, n_rows), n_tok, dim, generator=g).half()
    out = torch.empty(n_rows, n_tok, dim, dtype=torch.float16)
    for s in range(0, n_rows, block.shape[0]):
        e = min(s + block.shape[0], n_rows)
        out[s:e] = block[: e - s]
    if lengths is None:
        mask = torch.ones(n_rows, n_tok, dtype=torch.bool)
    else:
        mask = torch.arange(n_tok)[None, :] < lengths[:, None]
        out[~mask] = 0                                               # padding is zero, as extracted
    return out, mask


def build_context(arch: str, cfg: dict, params, users: int, items: int, max_len: int, device, seed: int):
    """(ModelContext, training windows, validation split) as the train stage would build them."""
    import torch

    from mmrec.features.types import ModalityFeatures
    from mmrec.models.base import ModelContext
    from mmrec.models.context import place_features
    from mmrec.models.registry import model_class
    from mmrec.teacher import PairTeacher
    from mmrec.train.stage import reads_features

    cls = model_class(arch)
    full, _ = synthetic_sequences(users, items, params.data.max_history, seed)
    train, valid = windows(full, max_len)
    pop = torch.bincount(train.reshape(-1), minlength=items + 1)
    pop[0] = 0
    g = torch.Generator().manual_seed(seed)
    has = torch.ones(items + 1, dtype=torch.bool)
    has[0] = False
    features: dict[str, ModalityFeatures] = {}
    if reads_features(cls):   # ID-only models load no features, as in the train stage
        tokens = cls.wants_tokens(cfg)
        for m, spec in (("text", TEXT), ("image", IMAGE)):
            vec = torch.randn(items + 1, spec["dim"], generator=g)
            vec[0] = 0
            f = ModalityFeatures(vec, has, encoder=f"synthetic-{m}")
            if tokens:
                lens = (torch.randint(8, spec["tokens"] + 1, (items + 1,), generator=g)
                        if m == "text" else None)
                f.tokens, f.token_mask = tiled_tokens(items + 1, spec["tokens"], spec["dim"], g, lens)
            features[m] = place_features(f, device)
    teachers = {}
    if getattr(cls, "needs_teacher", False):
        tp = params.teacher
        teachers = {m: PairTeacher(torch.rand(items + 1, tp.dim, generator=g).to(device),
                                   torch.randn(tp.codes, tp.subspaces, generator=g).to(device),
                                   tp.correlation, tp.subspaces, has.to(device)) for m in features}
    ctx = ModelContext(n_items=items, max_len=max_len, item_pop=pop.to(device), features=features,
                       teachers=teachers, device=device)
    return ctx, train, valid


def child(entry: str, users: int, items: int, batches: int, valid_users: int, device_name: str,
          seed: int) -> dict[str, Any]:
    """One model: build, train `batches` batches through the real loop, validate a user slice."""
    import torch

    from mmrec.metrics.ranking import evaluate_model
    from mmrec.io import pick_device, seed_everything
    from mmrec.models.registry import build_model
    from mmrec.train.entries import resolve_entry
    from mmrec.train.loop import train_model
    from mmrec.train.repro import make_repeatable

    params = real_data_params()
    e = resolve_entry(params.train, entry)
    device = pick_device(device_name)
    seed_everything(params.seed)
    make_repeatable(e.common.threads)
    t0 = time.perf_counter()
    ctx, train, valid = build_context(e.arch, e.config, params, users, items, e.common.max_len, device, seed)
    model = build_model(e.arch, ctx, e.config, section=entry)
    setup_s, rss_setup = time.perf_counter() - t0, vm_hwm_mb()
    usable = train[(train > 0).sum(1) >= 2]
    bs = e.common.batch_size
    n_batches = math.ceil(usable.shape[0] / bs)
    timed = usable[torch.randperm(usable.shape[0], generator=torch.Generator().manual_seed(seed))[: batches * bs]]
    common = e.common.model_copy(update={"epochs": 1, "patience": 1})
    with tempfile.TemporaryDirectory() as tmp:
        res = train_model(model, ctx, timed, None, common, Path(tmp), seed=params.seed, arch=e.arch,
                          name=entry, config=model.cfg.model_dump(mode="json"), progress=False)
    row = res.log[-1]
    ran = math.ceil(timed.shape[0] / bs)
    step_s = row["train_seconds"] / ran
    fixed_s = row["epoch_seconds"] - row["train_seconds"]              # the retention row (valid is None)

    ev = params.evaluate
    n_val = min(valid_users, len(valid))
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    catalogue: list[float] = []
    item_repr = model.item_repr

    def timed_item_repr() -> torch.Tensor:
        """The catalogue encoding the evaluator runs once per pass, timed on its own."""
        t = time.perf_counter()
        out = item_repr()
        sync()
        catalogue.append(time.perf_counter() - t)
        return out

    model.item_repr = timed_item_repr                                  # this instance only
    t = time.perf_counter()
    evaluate_model(model, valid.histories[:n_val], valid.targets[:n_val], ks=tuple(ev.ks),
                   mask_history=ev.mask_history, mask_items=valid.full_history[:n_val], device=device,
                   batch_users=ev.batch_users, item_chunk=ev.item_chunk)
    sync()
    slice_s = time.perf_counter() - t
    catalogue_s = catalogue[0]
    per_user = max(slice_s - catalogue_s, 0.0) / n_val
    valid_s = catalogue_s + per_user * len(valid)
    out = {"model": entry, "arch": e.arch, "device": str(device), "threads": torch.get_num_threads(),
           "hidden": getattr(model.cfg, "hidden", None), "max_len": e.common.max_len,
           "loss": getattr(model.cfg, "loss", None), "batch_size": bs, "timed_batches": ran,
           "step_s": step_s, "batches_per_epoch": n_batches, "epoch_train_s": step_s * n_batches,
           "epoch_fixed_s": fixed_s, "catalogue_s": catalogue_s, "valid_users_timed": n_val,
           "valid_s": valid_s, "epoch_total_s": step_s * n_batches + fixed_s + valid_s,
           "setup_s": setup_s, "params": sum(p.numel() for p in model.parameters()),
           "rss_after_setup_mb": rss_setup, "peak_rss_mb": vm_hwm_mb(),
           "mean_history": float((usable > 0).sum(1).float().mean()), "train_windows": int(usable.shape[0])}
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def fmt_table(results: list[dict[str, Any]]) -> str:
    """A markdown table of the per-model results (errors as rows)."""
    lines = ["| model | hidden | max_len | loss | s/batch | batches/epoch | train epoch s | retention s "
             "| valid s (catalogue) | epoch + valid s | peak RSS MiB (after setup) |",
             "|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        if "error" in r:
            lines.append(f"| {r['model']} | error: {r['error'].strip().splitlines()[-1][:200]} |")
            continue
        lines.append(f"| {r['model']} | {r['hidden']} | {r['max_len']} | {r['loss']} | {r['step_s']:.3f} "
                     f"| {r['batches_per_epoch']} | {r['epoch_train_s']:.0f} | {r['epoch_fixed_s']:.1f} "
                     f"| {r['valid_s']:.1f} ({r['catalogue_s']:.1f}) | **{r['epoch_total_s']:.0f}** "
                     f"| {r['peak_rss_mb']:,.0f} ({r['rss_after_setup_mb']:,.0f}) |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=None, help="train.models entries (default: all)")
    ap.add_argument("--users", type=int, help=f"default {ARTS['users']:,} (Arts)")
    ap.add_argument("--items", type=int, help=f"default {ARTS['items']:,} (Arts)")
    ap.add_argument("--batches", type=int, help=f"training batches timed per model (default {FULL['batches']})")
    ap.add_argument("--valid-users", type=int, help=f"users of the timed validation slice (default {FULL['valid_users']})")
    ap.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true",
                    help=f"smoke run: {QUICK['users']} users, {QUICK['items']} items, {QUICK['batches']} batches "
                         "(flags given explicitly still win)")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    for key, value in (QUICK if args.quick else FULL).items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.child:
        print(json.dumps(child(args.child, args.users, args.items, args.batches, args.valid_users,
                               args.device, args.seed)))
        return []
    models = args.models or list(real_data_params().train.models)
    print(f"{args.users:,} users x {args.items:,} items, {args.batches} timed batches, "
          f"validation slice {args.valid_users} users, device {args.device}", flush=True)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    results = []
    for m in models:
        cmd = [sys.executable, str(Path(__file__).resolve()), "--child", m, "--users", str(args.users),
               "--items", str(args.items), "--batches", str(args.batches), "--valid-users",
               str(args.valid_users), "--device", args.device, "--seed", str(args.seed)]
        t = time.perf_counter()
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
        if res.returncode:
            results.append({"model": m, "error": res.stderr[-2000:] or f"exit {res.returncode}"})
        else:
            results.append({**json.loads(res.stdout.strip().splitlines()[-1]),
                            "process_s": time.perf_counter() - t})
        print(json.dumps(results[-1]), flush=True)
    print()
    print(fmt_table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if any("error" in r for r in results):
        sys.exit(1)
    return results


if __name__ == "__main__":
    main()
