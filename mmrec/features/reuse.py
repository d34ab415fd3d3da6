"""Encode only what changed: reuse the vectors of items whose content was seen by the same encoder.

DVC deletes a stage's outputs before it runs, so the previous feature file cannot be patched in
place. After every complete extraction the feature file is hard-linked (copied where links are
not possible) to `paths.extract_cache_path`, outside every DVC output, beside a keys file that
maps each item's content key (sha256 of its text, or of its image bytes from the ingest
manifest) to its row. The next run of the same encoder copies the rows of unchanged contents
and encodes the rest: replacing one picture re-encodes exactly the items with those bytes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any, Optional

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmrec.features.encoders import Encoder, library_versions
from mmrec.features.extract import Dist, extract_modality
from mmrec.features.store import merge_chunks, write_chunk
from mmrec.io import read_parquet_metadata, write_parquet


def text_keys(sources: list[Optional[str]]) -> list[Optional[str]]:
    """sha256 of each text (None stays None)."""
    return [None if s is None else hashlib.sha256(s.encode()).hexdigest() for s in sources]


def encoder_fingerprint(encoder: Encoder) -> str:
    """What makes two runs' vectors interchangeable: encoder, token settings, device, versions."""
    return hashlib.sha256(json.dumps(
        {"encoder": encoder.name, "modality": encoder.modality, "dim": encoder.dim,
         "tokens": encoder.n_tokens, "token_dim": encoder.token_dim if encoder.n_tokens else 0,
         "device": encoder.device.type, "versions": library_versions()}, sort_keys=True).encode()).hexdigest()


def _keys_path(cache: Path) -> Path:
    return cache.with_name(cache.stem + ".keys.parquet")


def load_cached_keys(cache: Path, fingerprint: str) -> dict[str, int]:
    """content key -> row of the cached feature file; empty when absent or from another encoder."""
    kpath = _keys_path(cache)
    if not cache.exists() or not kpath.exists():
        return {}
    if read_parquet_metadata(kpath).get("fingerprint") != fingerprint:
        return {}
    df = pl.read_parquet(kpath)
    return dict(zip(df["key"].to_list(), df["row"].to_list()))


def save_cache(out_path: Path, keys: list[Optional[str]], cache: Path, fingerprint: str) -> None:
    """Remember `out_path` (a complete feature file) under its content keys.

    Only rows with a feature are kept, so an item that failed to decode is retried next time.
    The link is replaced, never written through: the file may share its inode with DVC's cache.
    """
    cache.parent.mkdir(parents=True, exist_ok=True)
    has = pq.read_table(out_path, columns=["has_feature"]).column(0).to_numpy(zero_copy_only=False)
    rows = [r for r, k in enumerate(keys) if k is not None and has[r]]
    tmp = cache.with_name(f".{cache.name}.tmp")
    if tmp.exists():
        tmp.unlink()
    try:
        os.link(out_path, tmp)
    except OSError:  # another file system, or links not supported
        shutil.copyfile(out_path, tmp)
    os.replace(tmp, cache)
    table = pl.DataFrame({"key": [keys[r] for r in rows], "row": rows}, schema={"key": pl.String, "row": pl.Int64})
    write_parquet(table.unique("key", keep="first", maintain_order=True), _keys_path(cache),
                  {"fingerprint": fingerprint, "source": str(out_path)})


def _splice(out_path: Path, cache: Path, reused_rows: np.ndarray, cache_rows: np.ndarray, chunk_size: int) -> None:
    """Replace rows `reused_rows` of `out_path` (0-based) by rows `cache_rows` of the cache file.

    Written in the row groups of a fresh run (one per chunk) and with the same metadata, so the
    file is byte-identical to encoding everything whenever the encoder is deterministic."""
    meta = read_parquet_metadata(out_path)
    fresh = pq.read_table(out_path).replace_schema_metadata(None)
    old = pq.read_table(cache).replace_schema_metadata(None)
    taken = old.take(pa.array(cache_rows, type=pa.int64()))
    taken = taken.set_column(0, "item_idx", pa.array(reused_rows + 1, type=pa.int32()))
    keep = np.ones(fresh.num_rows, dtype=bool)
    keep[reused_rows] = False
    merged = pa.concat_tables([fresh.filter(pa.array(keep)), taken.cast(fresh.schema)])
    merged = merged.take(pc.sort_indices(merged, [("item_idx", "ascending")]))
    counts = dict(meta.get("counts", {}))
    counts["extracted"] = counts.get("extracted", 0) + len(reused_rows)
    counts["missing"] = counts.get("missing", 0) - len(reused_rows)
    meta["counts"] = counts
    chunks = [cache.with_name(f".{out_path.stem}.splice-{k:06d}.arrow")
              for k in range((merged.num_rows + chunk_size - 1) // chunk_size)]
    try:
        for k, f in enumerate(chunks):
            write_chunk(merged.slice(k * chunk_size, chunk_size), f, {})
        merge_chunks(chunks, out_path, meta)
    finally:
        for f in chunks:
            if f.exists():
                f.unlink()


def extract_reusing(sources: list[Optional[str]], keys: list[Optional[str]], encoder: Encoder,
                    out_path: Path, cache: Path, *, chunk_size: int, dist: Optional[Dist] = None,
                    **kwargs: Any) -> dict[str, Any]:
    """`extract_modality` that encodes only items whose content key the cache lacks.

    Returns extract_modality's result with counts corrected for the reused rows and `reused`.
    """
    dist = dist or Dist()
    fp = encoder_fingerprint(encoder)
    cached = load_cached_keys(cache, fp)
    reuse = [r for r, (s, k) in enumerate(zip(sources, keys)) if s is not None and k in cached]
    todo = list(sources)
    for r in reuse:
        todo[r] = None
    res = extract_modality(todo, encoder, out_path, dist=dist, chunk_size=chunk_size, content_keys=keys,
                           reused=len(reuse), **kwargs)
    res["reused"] = len(reuse)
    if not res["complete"] or not dist.is_main:
        return res
    if reuse:
        _splice(Path(out_path), cache, np.asarray(reuse, dtype=np.int64),
                np.asarray([cached[keys[r]] for r in reuse], dtype=np.int64), chunk_size)
        res["extracted"] += len(reuse)
        res["missing"] -= len(reuse)
    save_cache(Path(out_path), keys, cache, fp)
    return res
