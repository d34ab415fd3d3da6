"""The image manifest: `ingest/images.parquet`, one row per item with its picture's path, size and
sha256.

It makes image *contents* a DVC dependency of `extract@image`: a picture replaced under the same
name changes its hash, so the manifest changes, DVC re-runs image extraction, and the extractor
re-encodes exactly the items whose hash it has not seen (see mmrec.features.reuse).

Columns: `item_idx` int32 (1..N, every item), `path` str (as in items.parquet; null when the item
has no picture), `size` int64 bytes and `sha256` str (null when there is no picture, or the file cannot be read:
extraction then counts that item as failed and names it in its summary).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import polars as pl

from mmrec.data.items import check_item_idx
from mmrec.hashing import file_sha256
from mmrec.io import read_frame, write_parquet

SCHEMA = {"item_idx": pl.Int32, "path": pl.String, "size": pl.Int64, "sha256": pl.String}
HASH_THREADS = 8  # hashing is I/O-bound on cold caches; hashlib releases the GIL on large reads


def _stat_hash(path: Optional[str], root: Path) -> tuple[Optional[int], Optional[str]]:
    if path is None:
        return None, None
    p = Path(path)
    p = p if p.is_absolute() else root / p
    try:
        return p.stat().st_size, file_sha256(p)
    except OSError:
        # Kept with a null hash: extraction tries it and counts the failure, naming the item.
        return None, None


def hash_images(paths: list[Optional[str]], root: str | Path = ".") -> tuple[list[Optional[int]], list[Optional[str]]]:
    """(sizes, sha256s) of `paths` (None stays None); relative paths resolve against `root`."""
    root = Path(root)
    sizes: list[Optional[int]] = [None] * len(paths)
    hashes: list[Optional[str]] = [None] * len(paths)
    # Only items with a picture go to the pool: a task per item cost ~3 s per 100k text-only items.
    todo = [k for k, p in enumerate(paths) if p is not None]
    with ThreadPoolExecutor(HASH_THREADS) as pool:
        for k, (size, digest) in zip(todo, pool.map(lambda k: _stat_hash(paths[k], root), todo)):
            sizes[k], hashes[k] = size, digest
    return sizes, hashes


def build_manifest(items: pl.DataFrame, root: str | Path = ".") -> pl.DataFrame:
    """The manifest of `items` (item_idx, image_path, optional has_image), sorted by item_idx.

    An item has a picture when image_path is set (and has_image, where present, is true).
    """
    for col in ("item_idx", "image_path"):
        if col not in items.columns:
            raise ValueError(f"items: column {col!r} missing (have {items.columns})")
    ok = pl.col("image_path").is_not_null() & (pl.col("image_path").str.len_chars() > 0)
    if "has_image" in items.columns:
        ok = ok & pl.col("has_image").fill_null(False)
    df = items.sort("item_idx").select(
        pl.col("item_idx").cast(pl.Int32), pl.when(ok).then(pl.col("image_path")).otherwise(None).alias("path"))
    sizes, hashes = hash_images(df["path"].to_list(), root)
    return df.with_columns(pl.Series("size", sizes, dtype=pl.Int64),
                           pl.Series("sha256", hashes, dtype=pl.String))


def write_manifest(items: pl.DataFrame, out: str | Path, root: str | Path = ".") -> Path:
    """Build and atomically write the manifest of `items` to `out` (ingest/images.parquet)."""
    return write_parquet(build_manifest(items, root), out)


def read_manifest(path: str | Path) -> pl.DataFrame:
    """The manifest, validated: the four columns and item_idx exactly 1..N."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: image manifest not found (run the ingest stage first)")
    df = read_frame(path)
    missing = [c for c in SCHEMA if c not in df.columns]
    if missing:
        raise ValueError(f"{path}: column(s) {missing} missing (have {df.columns})")
    df = df.sort("item_idx")
    check_item_idx(df["item_idx"].to_numpy(), path)
    return df
