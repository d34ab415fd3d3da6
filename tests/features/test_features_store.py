"""Parquet feature store: layout, metadata, polars readability, and the torch loader."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from mmrec.features.store import features_table, load_features, merge_chunks, read_chunk, write_chunk
from mmrec.io import read_parquet_metadata, write_parquet


def _arrays(lo: int, hi: int, d: int = 3, t: int = 2, seed: int = 0):
    rng = np.random.default_rng(seed)
    n = hi - lo
    vec = rng.normal(size=(n, d)).astype(np.float32)
    has = rng.random(n) > 0.3
    vec[~has] = 0
    tok = rng.normal(size=(n, t, d)).astype(np.float32)
    mask = np.ones((n, t), dtype=bool)
    mask[:, -1] = rng.random(n) > 0.5
    return np.arange(lo + 1, hi + 1), vec, has, tok, mask


@pytest.mark.parametrize("load_batch", [3, 4096])
def test_merge_and_load_round_trip(tmp_path, monkeypatch, load_batch):
    import mmrec.features.store as store

    monkeypatch.setattr(store, "LOAD_BATCH_ROWS", load_batch)
    parts = [_arrays(0, 4, seed=1), _arrays(4, 7, seed=2)]
    files = []
    for k, arrs in enumerate(parts):
        files.append(write_chunk(features_table(*arrs), tmp_path / f"c{k}.arrow", metadata={"chunk": k}))
    out = merge_chunks(files, tmp_path / "f.parquet", {"encoder": "x:y", "dims": {"vector": 3}})

    meta = read_parquet_metadata(out)
    assert meta["encoder"] == "x:y" and meta["dims"] == {"vector": 3} and "chunk" not in meta
    schema = pq.read_schema(out)
    vt, tt = schema.field("vector").type, schema.field("tokens").type
    assert pa.types.is_fixed_size_list(vt) and vt.list_size == 3 and vt.value_type == pa.float32()
    assert tt.list_size == 2 and tt.value_type.list_size == 3 and tt.value_type.value_type == pa.float16()
    assert pq.ParquetFile(out).metadata.num_row_groups == 2  # one per chunk: bounded memory

    df = pl.read_parquet(out)
    assert df.columns == ["item_idx", "vector", "has_feature", "tokens", "token_mask"]
    assert df["item_idx"].to_list() == list(range(1, 8))

    f = load_features(out)
    vec = np.concatenate([p[1] for p in parts])
    tok = np.concatenate([p[3] for p in parts])
    assert f.vector.shape == (8, 3) and f.vector.dtype == torch.float32
    assert torch.equal(f.vector[0], torch.zeros(3)) and not f.has_feature[0]
    assert torch.equal(f.vector[1:], torch.from_numpy(vec))
    assert torch.equal(f.has_feature[1:], torch.from_numpy(np.concatenate([p[2] for p in parts])))
    assert f.tokens.dtype == torch.float16 and f.tokens.shape == (8, 2, 3)
    assert torch.equal(f.tokens[1:], torch.from_numpy(tok.astype(np.float16)))
    assert torch.equal(f.token_mask[1:], torch.from_numpy(np.concatenate([p[4] for p in parts])))
    assert not f.token_mask[0].any() and f.encoder == "x:y" and f.n_items == 7 and f.dim == 3

    lean = load_features(out, tokens=False)
    assert lean.tokens is None and lean.token_mask is None and torch.equal(lean.vector, f.vector)


def test_vector_only_files_load_without_tokens(tmp_path):
    idx, vec, has, _, _ = _arrays(0, 5)
    out = write_parquet(features_table(idx, vec, has), tmp_path / "v.parquet", metadata={"encoder": "e"})
    f = load_features(out)
    assert f.tokens is None and f.vector.shape == (6, 3)


def test_loader_rejects_gaps_and_names_the_file(tmp_path):
    idx, vec, has, _, _ = _arrays(0, 4)
    idx = np.array([1, 2, 4, 5])
    out = write_parquet(features_table(idx, vec, has), tmp_path / "gap.parquet")
    with pytest.raises(ValueError, match=r"gap\.parquet: item_idx must be exactly 1\.\.4"):
        load_features(out)
    with pytest.raises(FileNotFoundError, match="run the extract stage"):
        load_features(tmp_path / "nope.parquet")


def test_mismatched_token_shapes_fail():
    idx, vec, has, tok, mask = _arrays(0, 4)
    with pytest.raises(ValueError, match="do not match"):
        features_table(idx, vec, has, tok, mask[:, :1])


def test_chunk_round_trip_keeps_the_parquet_schema(tmp_path):
    """A chunk (Arrow IPC) holds exactly the table, with the child field names a Parquet reader
    gives: the merged file is the same bytes as one merged from Parquet chunks."""
    table = features_table(*_arrays(0, 5, seed=3))
    chunk = write_chunk(table, tmp_path / "c.arrow", metadata={"chunk": {"index": 0}})
    back = read_chunk(chunk)
    assert back.replace_schema_metadata(None).equals(table)
    direct = tmp_path / "direct.parquet"
    pq.write_table(table, direct)
    # compared as text: Arrow's == ignores the child field names that end up in the file
    assert back.schema.remove_metadata().to_string() == pq.read_schema(direct).remove_metadata().to_string()
