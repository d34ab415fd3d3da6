"""items.parquet's contract for every later stage: `item_idx` is exactly 1..N (0 is padding, so a
row number is an item id), checked in one place, and the training popularity it carries."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch


def check_item_idx(idx: np.ndarray, path: str | Path, first: int = 1, total: int | None = None) -> None:
    """Raise ValueError naming `path` unless `idx` is exactly first, first+1, ... in order.

    A whole file passes `idx` sorted (first=1); a file read in batches passes each batch with its
    first expected id and the file's row count `total` (for the message)."""
    idx = np.asarray(idx)
    if (first == 1 and len(idx) == 0) or not np.array_equal(idx, np.arange(first, first + len(idx))):
        n = total if total is not None else len(idx)
        got = (f"rows {first}..{first + len(idx) - 1} hold {idx[:5].tolist()}..." if first != 1 else
               f"{len(idx)} rows spanning {idx.min() if len(idx) else None}..{idx.max() if len(idx) else None}")
        raise ValueError(f"{path}: item_idx must be exactly 1..{n if n else 'N'} in order, one row per real "
                         f"item without gaps or duplicates (0 is padding); {got}")


def load_item_pop(items_path: Path) -> "torch.Tensor":
    """Training popularity [N+1] long (row 0 = padding = 0) from items.parquet's `n_train`."""
    import torch

    from mmrec.io import read_frame

    if not items_path.exists():
        raise FileNotFoundError(f"{items_path}: not found (run the ingest stage first)")
    df = read_frame(items_path, columns=["item_idx", "n_train"]).sort("item_idx")
    check_item_idx(df["item_idx"].to_numpy(), items_path)
    if df["n_train"].null_count():
        raise ValueError(f"{items_path}: column n_train has {df['n_train'].null_count()} nulls")
    pop = np.zeros(df.height + 1, dtype=np.int64)
    pop[1:] = df["n_train"].to_numpy()
    return torch.from_numpy(pop)
