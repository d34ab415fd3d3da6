"""Tiny deterministic datasets for the train/models tests (imported by test modules).

Users walk the catalogue in steps: user u starts at item (u % N) + 1 and each next item is the
previous + step(u) (mod N), so the next item is a function of the last two items; a working
sequential model reaches a train-set Recall@10 near 1 within a few dozen epochs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import torch

from mmrec.config import parse_params
from mmrec.features.types import ModalityFeatures
from mmrec.models.base import ModelContext

# The CI/dev machine has 2 cores shared by several processes; torch's 2-thread OpenMP pool then
# spin-waits (a 30x slowdown for these tiny models). Tests only, never in library code.
torch.set_num_threads(1)


def sequences(n_users: int = 48, n_items: int = 24, length: int = 9) -> np.ndarray:
    """[U, length] item ids 1..N."""
    u = np.arange(n_users)[:, None]
    step = 1 + (u % 2)
    pos = np.arange(length)[None, :]
    return ((u + step * pos) % n_items + 1).astype(np.int64)


def splits_frame(seqs: np.ndarray) -> pl.DataFrame:
    """Leave-one-out rows: train = all but the last two, valid, test."""
    rows = []
    for u, s in enumerate(seqs.tolist()):
        n = len(s)
        rows.append((u + 1, "train", s[: n - 3], s[n - 3]))
        rows.append((u + 1, "valid", s[: n - 2], s[n - 2]))
        rows.append((u + 1, "test", s[: n - 1], s[n - 1]))
    return pl.DataFrame(rows, schema={"user_idx": pl.Int32, "split": pl.Utf8,
                                      "history": pl.List(pl.Int32), "target": pl.Int32}, orient="row")


def write_dataset(root: Path, name: str = "tiny", n_users: int = 48, n_items: int = 24,
                  length: int = 9) -> Path:
    """data/<name>/ingest/{items,splits}.parquet under root; returns the ingest dir."""
    seqs = sequences(n_users, n_items, length)
    ingest = Path(root) / "data" / name / "ingest"
    ingest.mkdir(parents=True, exist_ok=True)
    sp = splits_frame(seqs)
    sp.write_parquet(ingest / "splits.parquet")
    train = seqs[:, : length - 2]
    counts = np.bincount(train.ravel(), minlength=n_items + 1)
    pl.DataFrame({"item_idx": np.arange(1, n_items + 1, dtype=np.int32),
                  "item_id": [f"i{i}" for i in range(1, n_items + 1)],
                  "n_train": counts[1:].astype(np.int32)}).write_parquet(ingest / "items.parquet")
    return ingest


def features(n_items: int, dim: int, seed: int, missing: tuple[int, ...] = ()) -> ModalityFeatures:
    g = torch.Generator().manual_seed(seed)
    vec = torch.randn(n_items + 1, dim, generator=g)
    has = torch.ones(n_items + 1, dtype=torch.bool)
    has[0] = False
    for i in missing:
        has[i] = False
    vec[~has] = 0.0
    return ModalityFeatures(vector=vec, has_feature=has, encoder=f"synthetic-{dim}")


class FakeTeacher:
    """PairTeacherLike over a random denoised table: r = cosine, c = a hash of the pair."""

    def __init__(self, n_items: int, dim: int = 16, n_codes: int = 5, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.denoised = torch.rand(n_items + 1, dim, generator=g)
        self.denoised[0] = 0
        self.n_codes = n_codes
        self.correlation = "cosine"

    def pair_targets(self, i: torch.Tensor, j: torch.Tensor):
        a, b = self.denoised[i], self.denoised[j]
        r = torch.nn.functional.cosine_similarity(a, b, dim=-1)
        return r, (i * 7 + j * 3) % self.n_codes


def context(n_items: int = 24, max_len: int = 8, modalities=("text", "image"), teachers: bool = False,
            seqs: np.ndarray | None = None) -> ModelContext:
    pop = torch.zeros(n_items + 1, dtype=torch.long)
    if seqs is not None:
        pop += torch.bincount(torch.from_numpy(seqs).reshape(-1), minlength=n_items + 1)
    else:
        pop[1:] = 1
    dims = {"text": 12, "image": 20}
    feats = {m: features(n_items, dims[m], seed=len(m)) for m in modalities}
    teach = {m: FakeTeacher(n_items, seed=len(m)) for m in modalities} if teachers else {}
    return ModelContext(n_items=n_items, max_len=max_len, item_pop=pop, features=feats, teachers=teach)


def params(name: str = "tiny", models=("sasrec",), **common):
    base = {"epochs": 3, "batch_size": 16, "patience": 3, "hidden": 16, "heads": 2, "layers": 1,
            "max_len": 8, "retention_pairs": 100}
    base.update(common)
    return parse_params({"seed": 7, "device": "cpu", "data": {"name": name},
                         "train": {"models": list(models), "common": base}})


def mark_absent(root: Path, p, modality: str) -> None:
    """The record extract@<modality> leaves for a dataset without that modality."""
    from mmrec import paths
    from mmrec.paths import SUMMARY_FILE
    from mmrec.io import write_json

    write_json({"modality": modality, "skipped": f"no item has {modality}"},
               paths.feature_path(p, modality, root).parent / SUMMARY_FILE)


def write_features(root: Path, p, modalities=("text", "image"), n_items: int = 24,
                   missing: tuple[int, ...] = ()) -> None:
    """Feature files at the configured encoders' paths (format of mmrec.features.store), and
    the extraction's "absent" record for the modalities not in `modalities`."""
    from mmrec import paths
    from mmrec.features.store import features_table
    from mmrec.io import write_parquet

    for m in {"text", "image"} - set(modalities):
        mark_absent(root, p, m)
    dims = {"text": 12, "image": 20}
    for m in modalities:
        f = features(n_items, dims[m], seed=len(m), missing=missing)
        table = features_table(np.arange(1, n_items + 1), f.vector[1:].numpy(), f.has_feature[1:].numpy())
        write_parquet(table, paths.feature_path(p, m, root), metadata={"encoder": f.encoder})
