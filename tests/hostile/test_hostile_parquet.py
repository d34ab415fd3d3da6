"""A damaged Parquet input (garbage, truncated, a corrupt page) stops the reader with one error
naming the file, whichever stage reads it."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest

from mmrec.data.manifest import read_manifest
from mmrec.data.sequences import read_splits
from mmrec.serving.export import load_items, load_user_sequences
from mmrec.evaluate.stage import load_item_pop
from mmrec.features.extract import read_items
from mmrec.features.store import features_table, load_features
from mmrec.io import UnreadableParquetError, read_frame, read_parquet_metadata, read_table


def _garbage(path: Path) -> None:
    path.write_bytes(b"PAR1" + b"not really parquet" * 20)


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2] + data[-100:])  # the footer's tail survives


def _corrupt_page(path: Path) -> None:
    """A valid footer over data pages full of noise: only reading the rows finds out."""
    data = bytearray(path.read_bytes())
    rng = np.random.default_rng(0)
    for at in range(8, len(data) // 2, 7):
        data[at] = int(rng.integers(0, 256))
    path.write_bytes(bytes(data))


def _items(path: Path) -> None:
    pl.DataFrame({"item_idx": pl.Series(range(1, 401), dtype=pl.Int32), "n_train": [3] * 400,
                  "item_id": [f"I{i}" for i in range(400)], "text": ["a long enough text"] * 400}
                 ).write_parquet(path, compression="uncompressed")


def _manifest(path: Path) -> None:
    pl.DataFrame({"item_idx": pl.Series(range(1, 401), dtype=pl.Int32), "path": ["x.jpg"] * 400,
                  "size": [1] * 400, "sha256": ["0" * 64] * 400}).write_parquet(path, compression="uncompressed")


def _splits(path: Path) -> None:
    pl.DataFrame({"user_idx": pl.Series(range(400), dtype=pl.Int32), "split": ["train"] * 400,
                  "history": [[1, 2, 3]] * 400, "target": pl.Series([4] * 400, dtype=pl.Int32)}
                 ).write_parquet(path, compression="uncompressed")


def _interactions(path: Path) -> None:
    pl.DataFrame({"user_idx": pl.Series(range(400), dtype=pl.Int32), "user_id": [f"U{u}" for u in range(400)],
                  "item_idx": pl.Series([1] * 400, dtype=pl.Int32), "timestamp": list(range(400))}
                 ).write_parquet(path, compression="uncompressed")


def _export_items(path: Path) -> None:
    pl.DataFrame({"item_idx": pl.Series(range(1, 401), dtype=pl.Int32), "item_id": [f"I{i}" for i in range(400)],
                  "text": ["a long enough text"] * 400, "image_path": ["x.jpg"] * 400}
                 ).write_parquet(path, compression="uncompressed")


def _features(path: Path) -> None:
    n = 400
    table = features_table(np.arange(1, n + 1), np.ones((n, 8), np.float32), np.ones(n, bool))
    pq.write_table(table, path, compression="none")


READERS: dict[str, tuple[str, Callable[[Path], None], Callable[[Path], object]]] = {
    "items (extract)": ("items.parquet", _items, read_items),
    "items (evaluate)": ("items.parquet", _items, load_item_pop),
    "items (recommend export)": ("items.parquet", _export_items, load_items),
    "interactions (recommend export)": ("interactions.parquet", _interactions, load_user_sequences),
    "image manifest": ("images.parquet", _manifest, read_manifest),
    "splits": ("splits.parquet", _splits, lambda p: read_splits(p.parent, "train")),
    "features": ("text-enc.parquet", _features, load_features),
    "metadata": ("items.parquet", _items, read_parquet_metadata),
    "any table": ("items.parquet", _items, read_table),
    "any frame": ("items.parquet", _items, read_frame),
}


# (a corrupt page leaves the footer, and so the metadata, readable)
CASES = [(r, d) for r in READERS for d in (_garbage, _truncated, _corrupt_page)
         if not (r == "metadata" and d is _corrupt_page)]


@pytest.mark.parametrize(("reader", "damage"), CASES, ids=[f"{r}-{d.__name__[1:]}" for r, d in CASES])
def test_a_damaged_parquet_input_is_one_error_naming_the_file(tmp_path: Path, reader: str, damage) -> None:
    name, write, read = READERS[reader]
    path = tmp_path / name
    write(path)
    read(path)  # intact: reads
    damage(path)
    with pytest.raises(UnreadableParquetError) as info:
        read(path)
    msg = str(info.value)
    assert msg.startswith(f"{path}: not a readable Parquet file") and "\n" not in msg


def test_a_reader_still_raises_its_own_errors_unchanged(tmp_path: Path) -> None:
    path = tmp_path / "items.parquet"
    pl.DataFrame({"item_idx": pl.Series([1, 3], dtype=pl.Int32)}).write_parquet(path)
    with pytest.raises(ValueError, match=r"item_idx must be exactly 1\.\.") as info:
        read_items(path)
    assert not isinstance(info.value, UnreadableParquetError)
    with pytest.raises(FileNotFoundError, match="run the ingest stage first"):
        read_items(tmp_path / "missing.parquet")
