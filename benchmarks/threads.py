"""Thread discipline under load: wall time and CPU seconds of a fixed stage-like workload,
with the thread pools as the libraries size them ("before") and as mmrec sizes them ("after").

The workload (one child process per run, nothing cached between runs) exercises each pool a
stage holds, in the order a pipeline meets them:

- polars: sort + group-by of 3M synthetic interactions (what ingest does);
- FAISS: k-means of 200k 8-d points into 50 codes (the teacher's codebook);
- torch: 30 SASRec training steps at the sample's scale (2,000 items, batch 256, 13 positions,
  full softmax) and the extract stage's image encoder (EfficientNet-lite0) on 32 images.

Modes: `before` imports the libraries with nothing set (torch, polars and FAISS size their pools
themselves); `after` runs mmrec's stage entry first (`mmrec.cli.configure_threads`: pool
sizes and OMP_WAIT_POLICY=PASSIVE, then FAISS sized as the teacher does); `after-1` is `after` with MMREC_THREADS=1, the operator's override.
Scenarios: `quiet`; `loaded`, beside 2 busy-looping processes (load ~2 on top of ours);
`quota1`, the child in a cgroup with a quota of 1 CPU (what `docker --cpus=1` does; needs a
writable cgroup hierarchy, else skipped with a note); `taskset1`, pinned to one CPU.

    python benchmarks/threads.py                       # every scenario and mode, once
    python benchmarks/threads.py --scenarios quiet loaded --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

ROOT = Path(__file__).resolve().parents[1]
ITEMS, USERS, MAX_LEN, BATCH, STEPS = 2_000, 3_000, 13, 256, 30


def workload(mode: str) -> dict[str, float]:
    """Run the fixed workload in this process; returns seconds per part."""
    if mode != "before":
        sys.path.insert(0, str(ROOT))
        from mmrec.cli import configure_threads

        configure_threads(os.devnull)  # no params file: the budget is auto or MMREC_THREADS
    import numpy as np
    import polars as pl
    import torch

    out: dict[str, float] = {}
    rng = np.random.default_rng(0)
    n = 3_000_000
    df = pl.DataFrame({"user": rng.integers(0, 200_000, n), "item": rng.integers(1, 50_000, n),
                       "ts": rng.integers(0, 1 << 31, n)})
    t0 = time.perf_counter()
    for _ in range(2):
        df.sort(["user", "ts"]).group_by("user", maintain_order=True).agg(pl.col("item").tail(15))
    out["polars"] = time.perf_counter() - t0

    import faiss

    if mode != "before":
        from mmrec.threads import size_faiss

        size_faiss(faiss)  # as mmrec.teacher.codebook.fit_codebook does
    x = rng.standard_normal((200_000, 8)).astype(np.float32)
    t0 = time.perf_counter()
    km = faiss.Kmeans(8, 50, niter=20, seed=1, max_points_per_centroid=4001)
    km.train(x)
    out["faiss"] = time.perf_counter() - t0

    sys.path.insert(0, str(ROOT))
    from mmrec.features.encoders import build_encoder
    from mmrec.models.base import ModelContext, SeqBatch
    from mmrec.models.registry import build_model
    from mmrec.train.loop import make_optimizer

    torch.manual_seed(0)
    seqs = torch.randint(1, ITEMS + 1, (USERS, MAX_LEN + 1))
    pop = torch.bincount(seqs.reshape(-1), minlength=ITEMS + 1)
    ctx = ModelContext(n_items=ITEMS, max_len=MAX_LEN, item_pop=pop, features={}, teachers={})
    model = build_model("sasrec", ctx, {"hidden": 64, "layers": 2, "heads": 2, "dropout": 0.2,
                                        "max_len": MAX_LEN, "loss": "full_ce"}).train()
    opt = make_optimizer(model, 1e-3, 0.01)
    t0 = time.perf_counter()
    for k in range(STEPS):
        rows = torch.randint(0, USERS, (BATCH,))
        loss, _ = model.loss(SeqBatch(seqs[rows]), 1)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    out["train"] = time.perf_counter() - t0

    enc = build_encoder("efficientnet-lite0", "image", tokens=True)
    batch = torch.rand(16, 3, 224, 224)
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(2):
            enc.encode(batch)
    out["encode"] = time.perf_counter() - t0
    out["torch_threads"] = torch.get_num_threads()
    out["interop_threads"] = torch.get_num_interop_threads()
    out["polars_threads"] = pl.thread_pool_size()
    out["faiss_threads"] = faiss.omp_get_max_threads()
    return out


# --------------------------------------------------------------------------------------------
# Scenarios
# --------------------------------------------------------------------------------------------

def _cgroup_with_quota(cpus: float) -> Optional[Path]:
    """A fresh cgroup limited to `cpus` CPUs (v2 cpu.max, else v1 cfs quota); None if not allowed."""
    name = f"mmrec-bench-{os.getpid()}"
    for base, files in ((Path("/sys/fs/cgroup"), {"cpu.max": f"{int(cpus * 100000)} 100000"}),
                        (Path("/sys/fs/cgroup/cpu"), {"cpu.cfs_period_us": "100000",
                                                      "cpu.cfs_quota_us": str(int(cpus * 100000))})):
        if not all((base / f).exists() or f == "cpu.max" and (base / "cgroup.controllers").exists()
                   for f in files):
            continue
        d = base / name
        try:
            d.mkdir()
            for f, v in files.items():
                (d / f).write_text(v)
            return d
        except OSError:
            if d.exists():
                d.rmdir()
    return None


def run_child(mode: str, scenario: str) -> Optional[dict]:
    """One child run; wall seconds, CPU seconds (user + system, from wait4) and its parts."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS",
                        "NUMEXPR_NUM_THREADS", "POLARS_MAX_THREADS", "MMREC_THREADS", "OMP_WAIT_POLICY")}
    if mode == "after-1":
        env["MMREC_THREADS"] = "1"
    cmd = [sys.executable, __file__, "--child", mode]
    cg = None
    preexec = None
    if scenario == "taskset1":
        cmd = ["taskset", "-c", str(min(os.sched_getaffinity(0)))] + cmd
    if scenario == "quota1":
        cg = _cgroup_with_quota(1.0)
        if cg is None:
            return None
        preexec = lambda: (cg / "cgroup.procs").write_text(str(os.getpid()))  # noqa: E731
    hogs = []
    if scenario == "loaded":
        # busy loops that end by themselves (10 minutes) should this script be killed
        hog = "import time\nt = time.time()\nwhile time.time() - t < 600: pass"
        hogs = [subprocess.Popen([sys.executable, "-c", hog]) for _ in range(2)]
        time.sleep(0.5)
    try:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True, preexec_fn=preexec)
        stdout = p.stdout.read()
        _, status, ru = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t0
        p.returncode = os.waitstatus_to_exitcode(status)
    finally:
        for h in hogs:
            h.kill()
            h.wait()
        if cg is not None:
            cg.rmdir()
    if p.returncode != 0:
        raise RuntimeError(f"{mode}/{scenario}: child failed with {p.returncode}")
    parts = json.loads(stdout.strip().splitlines()[-1])
    return {"mode": mode, "scenario": scenario, "wall": wall, "cpu": ru.ru_utime + ru.ru_stime, **parts}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--scenarios", nargs="+", default=["quiet", "loaded", "quota1", "taskset1"])
    ap.add_argument("--modes", nargs="+", default=["before", "after", "after-1"])
    ap.add_argument("--repeats", type=int, default=1, help="runs per cell; the fastest counts")
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(workload(args.child)))
        return 0
    print(f"# thread discipline: {os.cpu_count()} CPUs, affinity {len(os.sched_getaffinity(0))}; "
          f"one child per run, best of {args.repeats}")
    print(f"{'scenario':9s} {'mode':8s} {'wall s':>7s} {'CPU s':>7s} {'polars':>7s} {'faiss':>6s} "
          f"{'train':>6s} {'encode':>7s}  threads torch/interop/polars/faiss")
    for scenario in args.scenarios:
        for mode in args.modes:
            runs = [r for r in (run_child(mode, scenario) for _ in range(args.repeats)) if r]
            if not runs:
                print(f"{scenario:9s} {mode:8s} skipped: no writable cgroup hierarchy here", flush=True)
                continue
            r = min(runs, key=lambda r: r["wall"])
            print(f"{scenario:9s} {mode:8s} {r['wall']:7.1f} {r['cpu']:7.1f} {r['polars']:7.2f} "
                  f"{r['faiss']:6.2f} {r['train']:6.2f} {r['encode']:7.2f}  "
                  f"{r['torch_threads']}/{r['interop_threads']}/{r['polars_threads']}/{r['faiss_threads']}",
                  flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
