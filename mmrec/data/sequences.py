"""Sequences as tensors: training windows (`SeqBatch`) and evaluation splits from `ingest/splits.parquet`.

Both the training loop and the evaluator read splits through this module, so neither depends on
the other.

splits.parquet has one row per (user, split): `user_idx`, `split` (train/valid/test),
`history` (list<int32>, oldest first, every earlier kept interaction) and `target`. A user's
training sequence is its train row's history + [target]; a valid/test row's input is its history.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import polars as pl
import torch

from mmrec.io import read_frame


@dataclass
class SeqBatch:
    """A training batch: each row is one user's left-padded window of S+1 item ids.

    Position t of `inputs` predicts position t of `targets`; rows are SASRec-style (every
    position is a training example, no prefix augmentation).
    """

    seq: torch.Tensor                  # [B, S+1] long, 0 = padding, most recent item last
    users: Optional[torch.Tensor] = None  # [B] long user_idx (for logging / sampling)

    @property
    def inputs(self) -> torch.Tensor:  # [B, S]
        return self.seq[:, :-1]

    @property
    def targets(self) -> torch.Tensor:  # [B, S]
        return self.seq[:, 1:]

    @property
    def target_mask(self) -> torch.Tensor:  # [B, S] bool, positions that are real examples
        return (self.inputs > 0) & (self.targets > 0)

    def to(self, device: torch.device | str) -> "SeqBatch":
        return SeqBatch(self.seq.to(device, non_blocking=True),
                        None if self.users is None else self.users.to(device, non_blocking=True))


def trim_padding(seq: torch.Tensor, min_width: int = 2) -> torch.Tensor:
    """`seq` [B, S+1] (left-padded) without the leading columns that are padding in every row:
    [B, S'+1], S' <= S, at least `min_width` columns (2: one input and its target).

    Real data is mostly padding (Amazon Scientific: 5 of 50 inputs on average, a batch's longest
    ~29), and the causal, padding-masked models give every real position the same output either
    way (padded keys are hidden, positions are right-aligned), so training on the trimmed batch
    does the same work in a fraction of the time.
    """
    real = (seq > 0).any(0)                                            # [S+1]
    first = int(real.to(torch.int8).argmax()) if bool(real.any()) else seq.shape[1]
    return seq[:, max(min(first, seq.shape[1] - min_width), 0):]


SPLITS_FILE = "splits.parquet"
_REQUIRED = ("user_idx", "split", "history", "target")


@dataclass
class EvalSplit:
    """One evaluation split as tensors.

    user_idx:     [U] long.
    histories:    [U, L] long, the last `max_len` history items, left-padded with 0.
    full_history: [U, H] long, all history items (0-padded), for history masking.
    targets:      [U] long.
    """

    user_idx: torch.Tensor
    histories: torch.Tensor
    full_history: torch.Tensor
    targets: torch.Tensor

    def __len__(self) -> int:
        return int(self.targets.shape[0])


def pad_left(lists: pl.Series, width: int) -> np.ndarray:
    """The last `width` elements of each list, right-aligned in a [U, width] int64 array of 0s.

    Vectorised: one explode and one scatter, no per-row Python loop.
    """
    lists = lists.list.tail(width)
    lens = lists.list.len().fill_null(0).to_numpy().astype(np.int64)   # [U]
    flat = lists.explode().drop_nulls().to_numpy().astype(np.int64)    # [sum(lens)]
    out = np.zeros((len(lens), width), dtype=np.int64)
    if flat.size:
        rows = np.repeat(np.arange(len(lens)), lens)
        starts = np.cumsum(lens) - lens
        cols = width - lens[rows] + (np.arange(flat.size) - starts[rows])
        out[rows, cols] = flat
    return out


def read_splits(ingest_dir: Path, split: str) -> pl.DataFrame:
    """Rows of one split, sorted by user, with the columns checked (errors name the file)."""
    path = Path(ingest_dir) / SPLITS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run the ingest stage first)")
    df = read_frame(path)
    missing = [c for c in _REQUIRED if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)}")
    if split not in ("train", "valid", "test"):
        raise ValueError(f"unknown split {split!r}; known: train, valid, test")
    df = df.filter(pl.col("split") == split).sort("user_idx")
    if df.is_empty():
        raise ValueError(f"{path}: no rows with split == {split!r}")
    if df["target"].null_count() or int(df["target"].min()) < 1:
        raise ValueError(f"{path}: split {split!r} has null or non-positive targets "
                         "(item_idx starts at 1; 0 is padding)")
    return df


def load_train_sequences(ingest_dir: Path, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(seq [U, max_len+1] long, user_idx [U]): each user's training sequence (history +
    target) cut to its last max_len+1 items, left-padded. Users without a train row are absent."""
    df = read_splits(ingest_dir, "train")
    seqs = df.select(pl.concat_list([pl.col("history").fill_null([]).cast(pl.List(pl.Int64)),
                                     pl.col("target").cast(pl.Int64)]).alias("seq"))["seq"]
    seq = torch.from_numpy(pad_left(seqs, max_len + 1))
    return seq, torch.from_numpy(df["user_idx"].to_numpy().astype(np.int64))


def load_eval_split(ingest_dir: Path, split: str, max_len: int) -> EvalSplit:
    """A valid/test split as an `EvalSplit` (histories cut to the model's `max_len`)."""
    df = read_splits(ingest_dir, split)
    hist = df["history"].fill_null([])
    width = max(int(hist.list.len().max() or 0), 1)
    return EvalSplit(
        user_idx=torch.from_numpy(df["user_idx"].to_numpy().astype(np.int64)),
        histories=torch.from_numpy(pad_left(hist, max_len)),
        full_history=torch.from_numpy(pad_left(hist, width)),
        targets=torch.from_numpy(df["target"].to_numpy().astype(np.int64)),
    )
