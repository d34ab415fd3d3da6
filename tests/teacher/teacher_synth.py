"""Tiny synthetic dataset for the teacher tests: items, splits and feature parquet files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa

from mmrec.config import Params, parse_params
from mmrec.paths import SUMMARY_FILE
from mmrec.io import write_json, write_parquet
from mmrec.paths import feature_path, ingest_dir

N_ITEMS = 120
N_USERS = 60
D_IN = 24
COLD = 10          # items 111..120 appear only as valid/test targets
MISSING_TEXT = (3, 17, 42, 99, 115)   # has_feature False for text


def synth_features(n: int = N_ITEMS, d: int = D_IN, rank: int = 4, seed: int = 0) -> np.ndarray:
    """[n+1, d] low-rank features plus noise (row 0 = padding, zero)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, rank)) @ rng.normal(size=(rank, d)) * 2.0 + 5.0
    x += 0.1 * rng.normal(size=(n, d))
    return np.vstack([np.zeros((1, d)), x]).astype(np.float32)


def features_table(x: np.ndarray, has: np.ndarray) -> pa.Table:
    x = np.where(has[:, None], x, 0.0).astype(np.float32)
    flat = pa.array(x[1:].reshape(-1))
    return pa.table({"item_idx": pa.array(np.arange(1, len(x), dtype=np.int32)),
                     "vector": pa.FixedSizeListArray.from_arrays(flat, x.shape[1]),
                     "has_feature": pa.array(has[1:])})


def synth_splits(seed: int = 0) -> pl.DataFrame:
    """Leave-one-out style splits; warm items 1..N-COLD in training sequences only."""
    rng = np.random.default_rng(seed)
    warm = N_ITEMS - COLD
    rows = []
    for u in range(1, N_USERS + 1):
        seq = rng.choice(np.arange(1, warm + 1), size=int(rng.integers(5, 10)), replace=False).tolist()
        seq[0] = seq[1] if u % 7 == 0 else seq[0]   # a repeated item inside some sequences
        valid_t = int(rng.integers(warm + 1, N_ITEMS + 1)) if u % 3 == 0 else seq[-1]
        train, valid_tgt, test_tgt = seq[:-2], seq[-2], valid_t
        rows.append((u, "train", train[:-1], train[-1]))
        rows.append((u, "valid", train, valid_tgt))
        rows.append((u, "test", train + [valid_tgt], test_tgt))
    return pl.DataFrame(rows, schema={"user_idx": pl.Int32, "split": pl.Utf8,
                                      "history": pl.List(pl.Int32), "target": pl.Int32}, orient="row")


def synth_params(**teacher: object) -> Params:
    t = {"dim": 8, "subspaces": 4, "codes": 6, "epochs": 40, "patience": 5, "batch_size": 32,
         "lr": 0.01, "random_pairs": 600, "max_cooccurring_pairs": 300, "kmeans_iters": 10}
    t.update(teacher)
    return parse_params({"data": {"name": "tiny"}, "device": "cpu", "teacher": t})


def build_dataset(root: Path, p: Params, image: bool = True) -> None:
    """items.parquet, splits.parquet and text (+ image) feature files under root/data/tiny;
    without `image`, the record extract@image leaves for a dataset without pictures."""
    idir = ingest_dir(p, root)
    idir.mkdir(parents=True, exist_ok=True)
    write_parquet(pl.DataFrame({"item_idx": np.arange(1, N_ITEMS + 1, dtype=np.int32),
                                "item_id": [f"i{i}" for i in range(1, N_ITEMS + 1)],
                                "text": [f"item {i}" for i in range(1, N_ITEMS + 1)]}),
                  idir / "items.parquet")
    write_parquet(synth_splits(), idir / "splits.parquet")
    has = np.ones(N_ITEMS + 1, dtype=bool)
    has[0] = False
    has[list(MISSING_TEXT)] = False
    write_parquet(features_table(synth_features(seed=1), has), feature_path(p, "text", root),
                  {"encoder": p.extract.text.encoder})
    if image:
        has_img = np.ones(N_ITEMS + 1, dtype=bool)
        has_img[0] = False
        write_parquet(features_table(synth_features(d=16, seed=2), has_img), feature_path(p, "image", root))
    else:
        write_json({"modality": "image", "skipped": "no item has image"},
                   feature_path(p, "image", root).parent / SUMMARY_FILE)
