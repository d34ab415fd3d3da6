"""What makes a training run repeat bit for bit, in one place.

Measured on CPU (tests/train/test_repro.py): with the same seed, data, library versions and
number of intra-op threads, training is bit-identical; with a different thread count the float
reductions split differently and the weights differ after a few steps (up to ~1e-3 here). So the
thread count is a setting (`train.common.threads`), not whatever the machine has. On CUDA the
scatter/index-add backward kernels are non-deterministic unless torch is told otherwise.
"""

from __future__ import annotations

import os

import torch


def make_repeatable(threads: int) -> None:
    """Deterministic kernels (CUDA included) and a fixed intra-op thread count.

    threads: torch's intra-op threads; 0 keeps what the stage entry chose (the process's CPU
    budget, mmrec.threads), which repeats only where that budget is the same. A non-zero count
    wins over the budget, because the weights depend on it (see mmrec.threads for precedence).
    """
    # cuBLAS reads this when its handle is created (first CUDA matmul, after this call).
    os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    # warn_only: an op without a deterministic kernel warns instead of stopping a long run.
    torch.use_deterministic_algorithms(True, warn_only=True)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
    if threads > 0:
        torch.set_num_threads(threads)
