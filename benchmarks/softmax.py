"""The full-softmax cross-entropy alone: materialised logits (F.cross_entropy, with and without
the temperature division the loss used to do) against mmrec's blocked `full_softmax_ce`, forward
and backward, at the Scientific and the Arts training shapes (d = 64). Best of `--repeats`.

    python benchmarks/softmax.py [--repeats 4]
"""

from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from mmrec.objectives.losses import full_softmax_ce

SHAPES = {"scientific": (12_800, 4_385), "arts": (3_328, 58_900)}   # (rows M, items N)


def best_time(fn, user: torch.Tensor, items: torch.Tensor, repeats: int) -> float:
    """Best wall time of forward + backward over `repeats` runs after one warm-up."""
    times = []
    for _ in range(repeats + 1):
        user.grad = items.grad = None
        t0 = time.perf_counter()
        fn().backward()
        times.append(time.perf_counter() - t0)
    return min(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=4)
    args = ap.parse_args()
    print(f"{'shape':<12}{'M x N':>16}{'materialised /T':>17}{'materialised':>14}{'blocked':>10}")
    for name, (m, n) in SHAPES.items():
        g = torch.Generator().manual_seed(0)
        user = torch.randn(m, 64, generator=g).requires_grad_()
        items = torch.randn(n, 64, generator=g).requires_grad_()
        labels = torch.randint(0, n, (m,), generator=g)
        with_div = best_time(lambda: F.cross_entropy(user @ items.T / 1.0, labels), user, items, args.repeats)
        plain = best_time(lambda: F.cross_entropy(user @ items.T, labels), user, items, args.repeats)
        blocked = best_time(lambda: full_softmax_ce(user, items, labels), user, items, args.repeats)
        print(f"{name:<12}{f'{m} x {n}':>16}{with_div:>16.3f}s{plain:>13.3f}s{blocked:>9.3f}s")


if __name__ == "__main__":
    main()
