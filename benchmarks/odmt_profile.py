"""Where an ODMT epoch goes on a real dataset, and what bf16 autocast saves.

Run from a project whose ingest, extract and teacher stages have run for the dataset in
params.yaml (e.g. a clone with data.name: scientific, see the README's real-data recipe):

    python benchmarks/odmt_profile.py --model odmt --steps 20
    python benchmarks/odmt_profile.py --model odmt --steps 20 --configs off:full off:trim cuda+cpu:trim
    python benchmarks/odmt_profile.py --params data/scientific.params.yaml --model odmt odmt_cold --configs off:trim

The model, context and training windows are built as the train stage builds them (resolved
params, the real-data profile). For each precision it times `--steps` optimiser steps after two
warm-up steps, split into the item side (token gather + projection + IMT + branch MLPs), the
user side (the branch encoders), the loss (logits, CE, distillation), backward and the optimiser
step; then one full-ranking validation over every validation user, split into the catalogue
encoding and the ranking. Each configuration is an AMP setting (fp32 `off` or bf16 `cuda+cpu`) and
whether batches keep their stored padding (`full`) or are trimmed as the training loop trims them
(`trim`, mmrec.data.sequences.trim_padding), optionally with every transformer block under
torch.compile (`off:trim:compile`; the training loop does not compile, BENCHMARKS.md says why).
The epoch figure is s/step x steps per epoch + validation.
Timings are per process on whatever else the machine runs: run it alone.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


class Timers:
    """Accumulates wall seconds per named part (nested parts are excluded from their parent)."""

    def __init__(self) -> None:
        self.total: dict[str, float] = defaultdict(float)

    def wrap(self, obj, attr: str, name: str) -> None:
        fn = getattr(obj, attr)

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.total[name] += time.perf_counter() - t0

        setattr(obj, attr, timed)


def run(model_name: str, steps: int, amp: str, threads: int, trim_batches: bool = True,
        params_path: str = "params.yaml", compile_blocks: bool = False) -> dict:
    import torch

    from mmrec.config import load_params
    from mmrec.data.sequences import SeqBatch, load_eval_split, load_train_sequences

    try:
        from mmrec.data.sequences import trim_padding
    except ImportError:  # a revision from before trimming (to time the code it replaced)
        trim_padding = None
    from mmrec.io import seed_everything
    from mmrec.metrics.ranking import rank_model
    from mmrec.models.context import build_context
    from mmrec.models.registry import build_model, model_class
    from mmrec.train import loop
    from mmrec.train.repro import make_repeatable
    from mmrec.train.stage import reads_features, resolve_entry
    from mmrec import paths

    params = load_params(params_path)
    arch, common, cfg = resolve_entry(params, model_name)
    common = common.model_copy(update={"amp": amp})
    cls = model_class(arch)
    seed_everything(params.seed)
    make_repeatable(threads)
    device = torch.device("cpu")
    ctx = build_context(params, device, Path("."), max_len=common.max_len, tokens=cls.wants_tokens(cfg),
                        modalities=None if reads_features(cls) else [],
                        teachers=bool(getattr(cls, "needs_teacher", False)))
    model = build_model(arch, ctx, cfg, section=model_name)
    if compile_blocks:
        from mmrec.models.layers import Block

        for module in model.modules():
            if isinstance(module, Block):
                # batches change shape every step (trimmed histories, unique items): dynamic shapes
                module.compile(dynamic=True)
    ingest = paths.ingest_dir(params, Path("."))
    seq, _ = load_train_sequences(ingest, common.max_len)
    seq = seq[(seq > 0).sum(1) >= 2]
    valid = load_eval_split(ingest, "valid", common.max_len)
    opt = loop.make_optimizer(model, common.lr, common.weight_decay)
    autocast, scaler = loop._autocast(device, common.amp)
    params_list = [p for g in opt.param_groups for p in g["params"]]

    trim = trim_padding if trim_batches and trim_padding is not None else (lambda s: s)
    t = Timers()
    t.wrap(model, "item_vectors", "item side (gather, projection, IMT, MLPs)")
    for enc in model.encoders.values():
        t.wrap(enc, "forward", "user side (branch encoders)")
    order = loop.epoch_order(seq.shape[0], params.seed, 1)
    batches = order.split(common.batch_size)
    model.train()
    warm = 6 if compile_blocks else 2                                  # compiling takes the first steps
    step_total = 0.0
    for i, idx in enumerate(batches[:steps + warm]):
        if i == warm:
            t.total.clear()
            step_total = 0.0
        s0 = time.perf_counter()
        with autocast:
            loss, _ = model.loss(SeqBatch(trim(seq[idx])), 1)
        f1 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        b1 = time.perf_counter()
        torch.nn.utils.clip_grad_norm_(params_list, common.grad_clip)
        opt.step()
        s1 = time.perf_counter()
        if i >= warm:
            t.total["forward"] += f1 - s0
            t.total["backward"] += b1 - f1
            t.total["optimizer step"] += s1 - b1
            step_total += s1 - s0
    n = min(steps, len(batches) - warm)
    parts = {k: v / n for k, v in t.total.items()}
    parts["loss (forward - item - user side)"] = (parts["forward"] - parts.get(
        "item side (gather, projection, IMT, MLPs)", 0.0) - parts.get("user side (branch encoders)", 0.0))
    model.eval()
    t.total.clear()
    v0 = time.perf_counter()
    with torch.no_grad():
        rank_model(model, valid.histories, valid.targets, mask_history=params.evaluate.mask_history,
                   mask_items=valid.full_history, device=device, batch_users=params.evaluate.batch_users,
                   item_chunk=params.evaluate.item_chunk)
    valid_s = time.perf_counter() - v0
    step_s = step_total / n
    return {"model": model_name, "amp": amp, "compiled": compile_blocks, "hidden": cfg.get("hidden"), "steps_timed": n,
            "steps_per_epoch": len(batches), "s_per_step": step_s,
            "parts_s_per_step": parts, "valid_s": valid_s,
            "valid_catalogue_s": t.total.get("item side (gather, projection, IMT, MLPs)", 0.0),
            "epoch_s": step_s * len(batches) + valid_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", nargs="+", default=["odmt"],
                    help="train.models entries of the params file, profiled in turn (e.g. an entry with a lever on)")
    ap.add_argument("--params", default="params.yaml", help="params file (default params.yaml; e.g. a derived "
                                                           "data/<name>.params.yaml of benchmarks/real_data.py)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--configs", nargs="+", default=["off:full", "off:trim", "cuda+cpu:trim"],
                    help="AMP:BATCHES pairs to compare: AMP a train.common.amp value, BATCHES full (the "
                         "padded windows as stored) or trim (leading all-padding columns dropped, "
                         "as the training loop does); AMP:BATCHES:compile also torch.compiles every "
                         "transformer block (inductor, dynamic shapes; 6 warm-up steps instead of 2)")
    ap.add_argument("--threads", type=int, default=0, help="0 = all CPUs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    from mmrec.threads import apply_plan, configure_environment

    configs = [c.split(":") for c in args.configs]
    for config, parts in zip(args.configs, configs):
        if len(parts) not in (2, 3) or parts[1] not in ("full", "trim") or parts[2:] not in ([], ["compile"]):
            ap.error(f"--configs {config!r}: expected AMP:full|trim or AMP:full|trim:compile")
    apply_plan(configure_environment(args.threads or "auto"))
    for model, (amp, batches, *compiled) in ((m, c) for m in args.model for c in configs):
        r = run(model, args.steps, amp, args.threads, trim_batches=batches == "trim", params_path=args.params,
                compile_blocks=bool(compiled))
        if args.json:
            print(json.dumps(r))
            continue
        print(f"\n{r['model']} amp={amp} batches={batches}{' compiled' if compiled else ''} hidden={r['hidden']}: "
              f"{r['s_per_step']:.3f} s/step x "
              f"{r['steps_per_epoch']} steps + validation {r['valid_s']:.1f} s "
              f"(catalogue {r['valid_catalogue_s']:.1f} s) = {r['epoch_s']:.1f} s/epoch")
        for k, v in sorted(r["parts_s_per_step"].items(), key=lambda kv: -kv[1]):
            print(f"  {k:45s} {v:7.3f} s/step")


if __name__ == "__main__":
    main()
