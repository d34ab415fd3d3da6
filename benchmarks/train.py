"""Training throughput at the ODMT paper's Arts scale, and RecBole's SASRec beside ours.

Synthetic data: 43,583 users, 58,900 items, 15 interactions per user (leave-one-out leaves a
13-item training sequence), Zipf-like item popularity; frozen features of 384 (text) and 1280
(image) dims; a random KDSR teacher (128-d, 8 subspaces, 50 codes). Each model runs in its own
subprocess (so peak RSS is per model): `--batches` timed optimiser steps after 2 warm-up steps,
extrapolated to a full epoch (printed as such). RecBole (installed by this script into
/tmp/recbole-venv, never a project dependency) trains its SASRec on the same interactions with
matching settings (hidden 64, 2 layers, 2 heads, CE over all items, batch 256, max length 13);
its epoch time is extrapolated the same way from its own train dataloader.

    python benchmarks/train.py --models sasrec gru4rec sasrec_ef sasrec_lf kdsr --batches 10 --recbole
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import textwrap
import time
from pathlib import Path

USERS, ITEMS, LENGTH, MAX_LEN, BATCH = 43_583, 58_900, 15, 13, 256
RECBOLE_VENV = Path("/tmp/recbole-venv")
ID_ONLY = ("sasrec", "gru4rec")
# ODMT reads token states: the default encoders' shapes (MiniLM 32 x 384; EfficientNet-lite0
# summary + 7x7 grid = 50 x 1280), all of them, as the paper (image_grid 0, 2 IMT layers).
TOKEN_MODELS = ("odmt", "odmt_kdsr")
TOKENS = {"text": (32, 384), "image": (50, 1280)}


def random_half(g, n: int, t: int, d: int):
    """[n, t, d] float16 normal noise, generated in row blocks (the float32 tensor at Arts scale
    would be 15 GB for the image tokens alone)."""
    import torch

    out = torch.empty(n, t, d, dtype=torch.float16)
    for s in range(0, n, 4096):
        out[s:s + 4096] = torch.randn(min(4096, n - s), t, d, generator=g)
    return out


def synthetic_sequences(seed: int = 0):
    """[USERS, LENGTH] item ids 1..ITEMS with a Zipf-like popularity."""
    import numpy as np

    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, ITEMS + 1) ** 0.8
    return (rng.choice(ITEMS, size=(USERS, LENGTH), p=p / p.sum()) + 1).astype(np.int64)


def child(arch: str, batches: int, loss: str, profile: bool = False) -> dict:
    """Time `batches` training steps of one model; runs inside its own process."""
    import torch

    from mmrec.features.types import ModalityFeatures
    from mmrec.models.base import ModelContext, SeqBatch
    from mmrec.models.registry import build_model
    from mmrec.teacher import PairTeacher
    from mmrec.train.loop import make_optimizer

    seqs = torch.from_numpy(synthetic_sequences())
    train = seqs[:, : LENGTH - 2]                                      # history + train target
    train = torch.nn.functional.pad(train, (MAX_LEN + 1 - train.shape[1], 0))   # [U, 14]
    pop = torch.bincount(train.reshape(-1), minlength=ITEMS + 1)
    pop[0] = 0
    g = torch.Generator().manual_seed(0)
    has = torch.ones(ITEMS + 1, dtype=torch.bool)
    has[0] = False
    # ID-only models get no feature tables, as in the train stage (they would only add RSS).
    feats = {m: ModalityFeatures(torch.randn(ITEMS + 1, d, generator=g), has, encoder=f"random-{d}")
             for m, d in (("text", 384), ("image", 1280))} if arch not in ID_ONLY else {}
    if arch in TOKEN_MODELS:
        for m, (t, d) in TOKENS.items():
            feats[m].tokens = random_half(g, ITEMS + 1, t, d)              # [N+1, T, d] float16
            feats[m].token_mask = torch.ones(ITEMS + 1, t, dtype=torch.bool)
    teachers = {m: PairTeacher(torch.rand(ITEMS + 1, 128, generator=g), torch.randn(50, 8, generator=g),
                               "cosine", 8, has) for m in feats} if "kdsr" in arch else {}
    ctx = ModelContext(n_items=ITEMS, max_len=MAX_LEN, item_pop=pop, features=feats, teachers=teachers)
    cfg = {"hidden": 64, "layers": 2, "heads": 2, "dropout": 0.2, "max_len": MAX_LEN, "loss": loss}
    if arch == "gru4rec":
        cfg["layers"] = 1
    if arch in TOKEN_MODELS:
        # the paper's settings (params.yaml's real-data defaults); ODMT's own loss is in-batch
        cfg.update(loss="inbatch" if loss == "full_ce" else loss, imt_layers=2, text_tokens=32,
                   image_grid=0)
    model = build_model(arch, ctx, cfg).train()
    opt = make_optimizer(model, 1e-3, 0.01)
    order = torch.randperm(USERS, generator=g)
    steps = []
    profiler = None
    for k in range(batches + 2):
        if k == 2 and profile:
            profiler = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
            profiler.__enter__()
        seq = train[order[k * BATCH:(k + 1) * BATCH]]
        t0 = time.perf_counter()
        loss_v, _ = model.loss(SeqBatch(seq), 1)
        opt.zero_grad(set_to_none=True)
        loss_v.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()
        if k >= 2:
            steps.append(time.perf_counter() - t0)
    if profiler is not None:
        profiler.__exit__(None, None, None)
        # stderr: the parent reads the JSON result from stdout
        print(profiler.key_averages().table(sort_by="self_cpu_time_total", row_limit=12),
              file=sys.stderr)
    n_batches = -(-USERS // BATCH)
    step = sum(steps) / len(steps)
    return {"model": arch, "loss": loss, "step_s": step, "batches_per_epoch": n_batches,
            "epoch_s_extrapolated": step * n_batches, "timed_batches": len(steps),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


RECBOLE_SCRIPT = textwrap.dedent("""
    import json, resource, sys, time
    import torch
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender import SASRec
    from recbole.utils import init_seed
    data_dir, batches = sys.argv[1], int(sys.argv[2])
    cfg = Config(model="SASRec", dataset="arts_syn", config_dict={
        "data_path": data_dir, "hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
        "hidden_dropout_prob": 0.2, "attn_dropout_prob": 0.2, "loss_type": "CE",
        "train_neg_sample_args": None, "MAX_ITEM_LIST_LENGTH": 13, "train_batch_size": 256,
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "mode": "full"},
        "device": "cpu", "use_gpu": False, "show_progress": False, "seed": 0, "reproducibility": True,
        "learning_rate": 0.001, "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
        "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)"})
    init_seed(0, True)
    ds = create_dataset(cfg)
    train, valid, test = data_preparation(cfg, ds)
    model = SASRec(cfg, train.dataset)
    opt = torch.optim.Adam(model.parameters(), lr=0.001)
    model.train()
    steps = []
    t_epoch = time.perf_counter()
    for k, inter in enumerate(train):
        t0 = time.perf_counter()
        loss = model.calculate_loss(inter)
        opt.zero_grad(); loss.backward(); opt.step()
        if k >= 2:
            steps.append(time.perf_counter() - t0)
        if k + 1 >= batches + 2:
            break
    loop = (time.perf_counter() - t_epoch) / (k + 1)  # per batch incl. its dataloader
    print(json.dumps({"model": "recbole_sasrec", "step_s": sum(steps) / len(steps),
                      "step_with_loader_s": loop, "batches_per_epoch": len(train),
                      "epoch_s_extrapolated": loop * len(train), "timed_batches": len(steps),
                      "train_samples": len(train.dataset),
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "threads": torch.get_num_threads()}))
""")


def recbole(batches: int) -> dict:
    """RecBole's SASRec on the same interactions, in its own virtualenv."""
    py = RECBOLE_VENV / "bin" / "python"
    if not py.exists():
        subprocess.run([sys.executable, "-m", "venv", str(RECBOLE_VENV)], check=True)
    # RecBole (last release 2023) uses np.float_, which NumPy 2 removed: numpy<2 (and a pandas built for it).
    ready = "import numpy, recbole; assert int(numpy.__version__.split('.')[0]) < 2"
    if subprocess.run([str(py), "-c", ready], capture_output=True).returncode:
        res = subprocess.run([str(py), "-m", "pip", "install", "-q", "recbole", "numpy<2", "pandas<2.3", "torch==2.14.1"],
                             capture_output=True, text=True)
        if res.returncode:
            return {"model": "recbole_sasrec", "error": "pip install failed: " + res.stderr[-800:]}
    data = Path("/tmp/recbole-data/arts_syn")
    data.mkdir(parents=True, exist_ok=True)
    seqs = synthetic_sequences()
    with open(data / "arts_syn.inter", "w") as f:
        f.write("user_id:token\titem_id:token\ttimestamp:float\n")
        for u, row in enumerate(seqs.tolist()):
            f.write("".join(f"{u + 1}\t{i}\t{t}\n" for t, i in enumerate(row)))
    script = Path("/tmp/recbole-data/bench.py")
    script.write_text(RECBOLE_SCRIPT)
    res = subprocess.run([str(py), str(script), str(data.parent), str(batches)], capture_output=True,
                         text=True, cwd="/tmp/recbole-data")
    if res.returncode:
        return {"model": "recbole_sasrec", "error": res.stderr[-1500:]}
    return json.loads(res.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", nargs="+", default=["sasrec", "gru4rec", "sasrec_ef", "sasrec_lf", "kdsr"])
    ap.add_argument("--batches", type=int, default=10, help="timed steps per model (after 2 warm-up)")
    ap.add_argument("--epochs", type=int, default=1, help="kept for symmetry; epochs are extrapolated")
    ap.add_argument("--loss", default="full_ce", choices=["full_ce", "inbatch"])
    ap.add_argument("--recbole", action="store_true", help="also time RecBole's SASRec")
    ap.add_argument("--profile", action="store_true",
                    help="print each model's torch.profiler table of the timed steps (operators by self CPU time)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.batches, args.loss, args.profile)))
        return
    results = []
    for m in args.models:
        res = subprocess.run([sys.executable, __file__, "--child", m, "--batches", str(args.batches),
                              "--loss", args.loss] + (["--profile"] * args.profile),
                             capture_output=True, text=True, env=os.environ)
        if args.profile and not res.returncode:
            print(res.stderr, flush=True)
        if res.returncode:
            results.append({"model": m, "error": res.stderr[-800:]})
        else:
            results.append(json.loads(res.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    if args.recbole:
        results.append(recbole(args.batches))
        print(json.dumps(results[-1]), flush=True)
    print(f"\nArts scale: {USERS} users, {ITEMS} items, {LENGTH} interactions/user; "
          f"batch {BATCH}, hidden 64; epochs extrapolated from {args.batches} timed steps")
    print(f"{'model':<16}{'s/step':>10}{'steps/epoch':>13}{'s/epoch':>10}{'peak RSS MB':>13}")
    for r in results:
        if "error" in r:
            print(f"{r['model']:<16} ERROR {r['error'][-300:]}")
            continue
        print(f"{r['model']:<16}{r['step_s']:>10.3f}{r['batches_per_epoch']:>13}"
              f"{r['epoch_s_extrapolated']:>10.1f}{r['peak_rss_mb']:>13.0f}")
    ours = next((r for r in results if r.get("model") == "sasrec" and "error" not in r), None)
    theirs = next((r for r in results if r.get("model") == "recbole_sasrec" and "error" not in r), None)
    if ours and theirs:
        print(f"RecBole SASRec epoch / mmrec SASRec epoch = "
              f"{theirs['epoch_s_extrapolated'] / ours['epoch_s_extrapolated']:.2f}x")


if __name__ == "__main__":
    main()
