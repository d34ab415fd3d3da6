"""Top-k recommendations for one user from a trained model (used by `mmrec recommend`)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import polars as pl
import torch


def user_history(interactions_path: Path, user_id: str) -> tuple[int, pl.DataFrame]:
    """(user_idx, the user's interactions oldest first) for a raw user id.

    interactions.parquet is sorted by user then time with a stable tie-break, so the file order
    is the history order. An unknown id is an error that shows a few known ones.
    """
    if not interactions_path.exists():
        raise FileNotFoundError(f"{interactions_path}: not found (run the ingest stage first)")
    lf = pl.scan_parquet(interactions_path)
    rows = (lf.with_row_index("_row").filter(pl.col("user_id") == str(user_id))
            .sort("_row").drop("_row").collect())
    if rows.is_empty():
        sample = lf.select("user_id").unique(maintain_order=True).head(5).collect()["user_id"].to_list()
        raise KeyError(f"user {user_id!r} is not in {interactions_path}; known ids look like: "
                       f"{', '.join(map(str, sample))}")
    return int(rows["user_idx"][0]), rows


def left_pad(items: list[int], width: int) -> torch.Tensor:
    """The last `width` ids, left-padded with 0: [1, width] long (the models' input layout)."""
    tail = items[-width:] if width > 0 else []
    return torch.tensor([[0] * (width - len(tail)) + tail], dtype=torch.long)


@torch.inference_mode()
def top_k(model: torch.nn.Module, history: list[int], k: int, max_len: int,
          mask_history: bool = True) -> tuple[list[int], list[float]]:
    """The k best item ids and their scores for one user (padding never; history masked if asked)."""
    model.eval()
    device = next(model.parameters()).device
    items = model.item_repr().float()                                  # [N+1, D]
    user = model.user_repr(left_pad(history, max_len).to(device)).float()  # [1, D]
    scores = (user @ items.T)[0]                                       # [N+1]
    scores[0] = -math.inf
    if mask_history and history:
        scores[torch.tensor(sorted(set(history)), device=device)] = -math.inf
    k = min(k, int(torch.isfinite(scores).sum()))
    val, idx = torch.topk(scores, k)
    return idx.cpu().tolist(), val.cpu().tolist()


def item_rows(items_path: Path, ids: list[int]) -> dict[int, dict[str, Any]]:
    """item_idx -> {item_id, text, image_path} for the given ids."""
    if not items_path.exists():
        raise FileNotFoundError(f"{items_path}: not found (run the ingest stage first)")
    df = (pl.scan_parquet(items_path).filter(pl.col("item_idx").is_in(ids))
          .select("item_idx", "item_id", "text", "image_path").collect())
    return {int(r["item_idx"]): r for r in df.iter_rows(named=True)}
