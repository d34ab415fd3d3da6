"""Peak memory and time of the teacher stage's core (denoising AE + pair sample + FAISS codebook).

Each item count runs in its own subprocess so its peak RSS is its own. Printed beside the GPU
memory the reference KDSR design needs for one modality's N×N float64 correlations plus N×N
int64 codes (16·N² bytes) and for the two modalities it keeps (32·N² bytes).

    .venv/bin/python benchmarks/teacher.py                       # N = 10k, 50k, 100k, 200k
    .venv/bin/python benchmarks/teacher.py --sizes 10000 --epochs 1
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a clone without installing


def _rss_mb() -> float:
    """Current resident set size in MB (Linux /proc)."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * resource.getpagesize() / 2**20


def child(n: int, d_in: int, epochs: int, seq_len: int, seed: int) -> dict:
    """One measurement: synthetic features [n+1, d_in] and n training sequences of seq_len items."""
    import numpy as np
    import polars as pl
    import torch

    from mmrec.config import parse_params
    from mmrec.io import pick_device
    from mmrec.teacher.pairs import training_sequences
    from mmrec.teacher.stage import build_modality

    base = _rss_mb()
    g = torch.Generator().manual_seed(seed)
    # low-rank structure plus noise, like real pooled encoder outputs; float32, filled in chunks
    # so that no temporary of the matrix's size inflates the measured peak
    w = torch.randn(32, d_in, generator=g)
    x = torch.empty(n + 1, d_in)
    for s in range(0, n + 1, 16384):
        rows = min(16384, n + 1 - s)
        x[s:s + rows] = torch.randn(rows, 32, generator=g) @ w + 0.3 * torch.randn(rows, d_in, generator=g)
    has = torch.ones(n + 1, dtype=torch.bool)
    has[0] = False
    x[0] = 0
    rng = np.random.default_rng(seed)
    items = rng.integers(1, n + 1, size=(n, seq_len), dtype=np.int32)  # one sequence per item count
    splits = pl.DataFrame({
        "user_idx": np.arange(1, n + 1, dtype=np.int32),
        "split": ["train"] * n,
        "history": pl.Series(items[:, :-1]).cast(pl.List(pl.Int32)),
        "target": items[:, -1],
    })
    del items
    seqs = training_sequences(splits)
    del splits
    p = parse_params({"teacher": {"epochs": epochs}})
    setup = _rss_mb()
    t0 = time.perf_counter()
    out = build_modality(x, has, seqs, p.teacher, seed, pick_device(p.device), progress=False)
    seconds = time.perf_counter() - t0
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB
    rec = out["record"]
    return {"n": n, "seconds": seconds, "phases": out["seconds"], "peak_rss_mb": peak,
            "rss_after_imports_mb": base, "rss_before_core_mb": setup,
            "pairs": rec["pairs"]["cooccurring_sampled"] + rec["pairs"]["random"],
            "epochs": rec["autoencoder"]["epochs_run"], "device": str(pick_device(p.device))}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 50_000, 100_000, 200_000])
    ap.add_argument("--dim-in", type=int, default=768)
    ap.add_argument("--epochs", type=int, default=2, help="AE epochs (the stage's default is 200 with early stop)")
    ap.add_argument("--seq-len", type=int, default=16, help="items per synthetic training sequence")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child is not None:
        print(json.dumps(child(a.child, a.dim_in, a.epochs, a.seq_len, a.seed)))
        return

    print(f"teacher core: {a.dim_in}-d features, {a.epochs} AE epochs, one {a.seq_len}-item training "
          f"sequence per item, teacher params otherwise default")
    head = (f"{'N':>8} {'time s':>7} {'AE s':>6} {'pairs s':>7} {'codebook s':>10} {'pairs':>9} "
            f"{'peak RSS MB':>11} {'of which setup':>14} {'ref GPU 16N² GB':>15} {'ref 2 mod. 32N² GB':>18}")
    print(head)
    for n in a.sizes:
        cmd = [sys.executable, __file__, "--child", str(n), "--dim-in", str(a.dim_in),
               "--epochs", str(a.epochs), "--seq-len", str(a.seq_len), "--seed", str(a.seed)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode:
            print(f"{n:>8} failed (exit {proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        ph = r["phases"]
        print(f"{n:>8} {r['seconds']:7.1f} {ph['autoencoder']:6.1f} {ph['pairs']:7.1f} {ph['codebook']:10.1f} "
              f"{r['pairs']:>9} {r['peak_rss_mb']:11.0f} {r['rss_before_core_mb']:14.0f} "
              f"{16 * n * n / 1e9:15.1f} {32 * n * n / 1e9:18.1f}", flush=True)
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"largest child peak RSS (getrusage RUSAGE_CHILDREN): {children:.0f} MB")


if __name__ == "__main__":
    main()
