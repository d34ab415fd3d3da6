"""Full-ranking evaluation vs a bare matmul + top-k over the same tensors (Arts-sized by default).

    python benchmarks/evaluate.py                       # 43,583 users x 58,900 items, d = 64
    python benchmarks/evaluate.py --users 5000 --device cuda

Both sides get the same user vectors, item table and user batches. The evaluator additionally
masks each user's history (15 items), excludes padding, breaks ties pessimistically and returns
exact ranks (not only a top-k), from which Recall/NDCG/MRR@{5,10,20} follow. Prints the time of
each, their ratio (goal: evaluator within 2x of bare), throughput and the process's peak RSS.
"""

from __future__ import annotations

import argparse
import resource
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmrec.metrics.formulas import metrics_from_ranks  # noqa: E402
from mmrec.metrics.ranking import rank_targets  # noqa: E402


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare(user: torch.Tensor, items: torch.Tensor, batch: int, k: int) -> float:
    t = time.perf_counter()
    for s in range(0, user.shape[0], batch):
        torch.topk(user[s:s + batch] @ items.T, k, dim=1)
    _sync(user.device)
    return time.perf_counter() - t


def evaluator(user, items, targets, hist, batch: int, chunk: int) -> tuple[float, torch.Tensor]:
    t = time.perf_counter()
    ranks = torch.cat([rank_targets(user[s:s + batch], items, targets[s:s + batch], hist[s:s + batch],
                                    mask_history=True, item_chunk=chunk)
                       for s in range(0, user.shape[0], batch)])
    _sync(user.device)
    return time.perf_counter() - t, ranks


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--users", type=int, default=43_583)
    ap.add_argument("--items", type=int, default=58_900)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--history", type=int, default=15)
    ap.add_argument("--batch-users", type=int, default=1024)
    ap.add_argument("--item-chunk", type=int, default=65_536)
    ap.add_argument("--repeats", type=int, default=2, help="timed runs per side; the best is reported")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--only", choices=["evaluator"], help="skip the bare side (peak RSS of the evaluator alone)")
    args = ap.parse_args()
    device = torch.device(args.device)
    g = torch.Generator().manual_seed(0)
    user = torch.randn(args.users, args.dim, generator=g).to(device)
    items = torch.randn(args.items + 1, args.dim, generator=g).to(device)
    targets = torch.randint(1, args.items + 1, (args.users,), generator=g).to(device)
    hist = torch.randint(0, args.items + 1, (args.users, args.history), generator=g).to(device)
    print(f"{args.users:,} users x {args.items:,} items, d={args.dim}, batch_users={args.batch_users}, "
          f"item_chunk={args.item_chunk}, device={device}, torch threads={torch.get_num_threads()}")
    # Warm-up (allocator, BLAS threads) on a slice, then alternate the sides so both see the
    # same machine load.
    if not args.only:
        bare(user[:2048], items, args.batch_users, 20)
    evaluator(user[:2048], items, targets[:2048], hist[:2048], args.batch_users, args.item_chunk)
    tb, te = [], []
    for _ in range(args.repeats):
        if not args.only:
            tb.append(bare(user, items, args.batch_users, 20))
        dt, ranks = evaluator(user, items, targets, hist, args.batch_users, args.item_chunk)
        te.append(dt)
    e = min(te)
    m = metrics_from_ranks(ranks.cpu(), [10])
    if tb:
        b = min(tb)
        print(f"bare matmul + top-20: {b:.2f} s  ({args.users / b:,.0f} users/s)  runs: "
              f"{', '.join(f'{x:.2f}' for x in tb)}")
    print(f"evaluator (masked, exact ranks): {e:.2f} s  ({args.users / e:,.0f} users/s)  runs: "
          f"{', '.join(f'{x:.2f}' for x in te)}")
    if tb:
        print(f"ratio evaluator / bare: {e / b:.2f}x  (goal <= 2x)")
    print(f"sanity: random-vector recall@10 = {m['recall@10']:.5f} (chance ~ {10 / args.items:.5f})")
    print(f"peak RSS: {peak_rss_mib():,.0f} MiB")
    if device.type == "cuda":
        print(f"peak CUDA memory: {torch.cuda.max_memory_allocated() / 2**20:,.0f} MiB")


if __name__ == "__main__":
    main()
