"""Encode only what changed: reuse the vectors of items whose content was seen by the same encoder.

DVC deletes a stage's outputs before it runs, so the previous feature file cannot be patched in
place. After every complete extraction a copy of the feature file (never a link: damaging the
output must not damage the cache) goes to `paths.extract_cache_path`, outside every DVC output,
beside a keys file that maps each item's content key (sha256 of its text, or of its image bytes
from the ingest manifest) to its row. The next run of the same encoder copies the rows of
unchanged contents and encodes the rest: replacing one picture re-encodes exactly the items
with those bytes.

The cache is verified before it is trusted: the keys file records the sha256, size and row
count of the feature copy it describes, and the rows it names must hold a feature. Anything
else (a fault between the two writes, a damaged or truncated file, keys from another copy) and
the cache is discarded, said in the summary, and every item is encoded afresh.
"""

from __future__ import annotations

import hashlib
import json
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
from mmrec.hashing import file_sha256
from mmrec.io import atomic_path, read_parquet_metadata, write_parquet


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


class CacheMismatch(ValueError):
    """The reuse cache is not what its keys file says it is."""


def discard_cache(cache: Path) -> None:
    """Delete the cached feature copy and its keys (the next complete run writes a new pair)."""
    for f in (_keys_path(cache), cache):
        f.unlink(missing_ok=True)


def _verified_keys(cache: Path, fingerprint: str) -> dict[str, int]:
    """`load_cached_keys` without the discarding: raises CacheMismatch (or a read error)."""
    kpath = _keys_path(cache)
    for f in (cache, kpath):
        if not f.exists():
            raise CacheMismatch(f"{f.name} is missing")
    meta = read_parquet_metadata(kpath)
    if meta.get("fingerprint") != fingerprint:
        return {}  # another encoder setting's cache: not damage, just not ours (replaced after this run)
    if "features_sha256" not in meta:
        raise CacheMismatch(f"{kpath.name} was written by an older mmrec, without the features' sha256")
    size = cache.stat().st_size
    if meta.get("features_size") != size:
        raise CacheMismatch(f"{cache.name} is not the file its keys were written for ({size} bytes, "
                            f"not {meta.get('features_size')})")
    if meta.get("features_sha256") != file_sha256(cache):
        raise CacheMismatch(f"{cache.name} is not the file its keys were written for (sha256 differs)")
    has = pq.read_table(cache, columns=["has_feature"]).column(0).to_numpy(zero_copy_only=False)
    df = pl.read_parquet(kpath)
    if df.schema != pl.Schema({"key": pl.String, "row": pl.Int64}) or df["key"].null_count() or \
            df["key"].n_unique() != df.height:
        raise CacheMismatch(f"{kpath.name}: columns {dict(df.schema)} are not unique keys and rows")
    rows = df["row"].to_numpy()
    if len(rows) and (rows.min() < 0 or rows.max() >= len(has) or not has[rows].all()):
        raise CacheMismatch(f"{kpath.name} names rows without a feature in {cache.name} ({len(has)} rows)")
    return dict(zip(df["key"].to_list(), rows.tolist()))


def load_cached_keys(cache: Path, fingerprint: str, *, discard: bool = True) -> tuple[dict[str, int], Optional[str]]:
    """(content key -> row of the cached feature file, why the cache was discarded or None).

    Empty when there is no cache or it is another encoder's. A cache that fails verification
    (see the module docstring) is deleted when `discard` (the main process) and reported."""
    if not cache.exists() and not _keys_path(cache).exists():
        return {}, None
    try:
        return _verified_keys(cache, fingerprint), None
    except Exception as err:  # noqa: BLE001 - any damage means: encode afresh, never trust it
        if discard:
            discard_cache(cache)
        return {}, f"{cache}: {err}"[:300]


def save_cache(out_path: Path, keys: list[Optional[str]], cache: Path, fingerprint: str) -> None:
    """Remember `out_path` (a complete feature file) under its content keys.

    Only rows with a feature are kept, so an item that failed to decode is retried next time.
    The features are copied, never linked (the output may share its inode with DVC's cache, and
    damage to either must not reach the other). The old keys go first, and the new ones record
    the copy's sha256 and size: a crash between the writes can never pair old keys with new rows.
    """
    cache.parent.mkdir(parents=True, exist_ok=True)
    _keys_path(cache).unlink(missing_ok=True)
    with atomic_path(cache) as tmp:
        shutil.copyfile(out_path, tmp)
    has = pq.read_table(cache, columns=["has_feature"]).column(0).to_numpy(zero_copy_only=False)
    rows = [r for r, k in enumerate(keys) if k is not None and has[r]]
    table = pl.DataFrame({"key": [keys[r] for r in rows], "row": rows}, schema={"key": pl.String, "row": pl.Int64})
    write_parquet(table.unique("key", keep="first", maintain_order=True), _keys_path(cache),
                  {"fingerprint": fingerprint, "source": str(out_path), "features_sha256": file_sha256(cache),
                   "features_size": cache.stat().st_size})


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

    Returns extract_modality's result with counts corrected for the reused rows, `reused`, and
    `cache_discarded` (why) when the cache failed verification or could not be saved. When the
    reused rows cannot be spliced in, `out_path` (zeros where they belong) is removed, the cache
    discarded, and the error raised: the next run encodes everything.
    """
    dist = dist or Dist()
    out_path = Path(out_path)
    fp = encoder_fingerprint(encoder)
    cached, discarded = load_cached_keys(cache, fp, discard=dist.is_main)
    reuse = [r for r, (s, k) in enumerate(zip(sources, keys)) if s is not None and k in cached]
    todo = list(sources)
    for r in reuse:
        todo[r] = None
    res = extract_modality(todo, encoder, out_path, dist=dist, chunk_size=chunk_size, content_keys=keys,
                           reused=len(reuse), **kwargs)
    res["reused"] = len(reuse)
    if discarded:
        res["cache_discarded"] = discarded
    if not res["complete"] or not dist.is_main:
        return res
    if reuse:
        try:
            _splice(out_path, cache, np.asarray(reuse, dtype=np.int64),
                    np.asarray([cached[keys[r]] for r in reuse], dtype=np.int64), chunk_size)
        except Exception as err:
            out_path.unlink(missing_ok=True)
            discard_cache(cache)
            raise CacheMismatch(f"{cache}: reusing {len(reuse)} cached vectors failed ({err}); the cache "
                                f"was discarded and {out_path} removed: run extract again") from err
        res["extracted"] += len(reuse)
        res["missing"] -= len(reuse)
    try:
        save_cache(out_path, keys, cache, fp)
    except Exception as err:  # noqa: BLE001 - the output is complete; only the next run's reuse is lost
        discard_cache(cache)
        res["cache_discarded"] = f"{cache}: not saved ({type(err).__name__}: {err})"[:300]
    return res
