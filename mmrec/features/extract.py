"""Batched, resumable, shardable extraction of one modality into the Parquet feature store.

Items are cut into fixed chunks of `chunk_size` rows (by position in item_idx order). Each
chunk is encoded in batches that never cross a chunk boundary and written atomically to a
chunk folder; a restarted run skips the chunks already there, and the final file (a streamed
merge of the chunks in order) is byte-identical to an uninterrupted run's. Under torchrun,
rank r encodes chunks k with k % world == r and rank 0 merges, so the output does not depend
on the number of processes either.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import polars as pl
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from mmrec.data.items import check_item_idx
from mmrec.features.encoders import Encoder, library_versions
from mmrec.features.store import features_table, merge_chunks, read_chunk_metadata, write_chunk
from mmrec.io import read_frame, write_json
from mmrec.threads import budget, loader_split

MODALITIES = ("text", "image")
MAX_FAILED_EXAMPLES = 20  # failures listed by item in summary/metadata (all are counted)


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------

def read_items(path: str | Path) -> pl.DataFrame:
    """items.parquet sorted by item_idx; raises naming the file when item_idx is not 1..N."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: items file not found (run the ingest stage first)")
    items = read_frame(path)
    for col in ("item_idx",):
        if col not in items.columns:
            raise ValueError(f"{path}: column {col!r} missing (have {items.columns})")
    items = items.sort("item_idx")
    check_item_idx(items["item_idx"].to_numpy(), path)
    return items


def modality_sources(items: pl.DataFrame, modality: str, root: str | Path = ".") -> list[Optional[str]]:
    """Per item (in item_idx order): the text, or the resolved image path; None where the item
    lacks the modality (null/empty, or has_text/has_image False)."""
    if modality == "text":
        if "text" not in items.columns:
            return [None] * items.height
        src = pl.col("text").cast(pl.Utf8)
        ok = src.is_not_null() & (src.str.strip_chars().str.len_chars() > 0)
        flag = "has_text"
    elif modality == "image":
        if "image_path" not in items.columns:
            return [None] * items.height
        src = pl.col("image_path").cast(pl.Utf8)
        ok = src.is_not_null() & (src.str.len_chars() > 0)
        flag = "has_image"
    else:
        raise ValueError(f"unknown modality {modality!r}; known: {', '.join(MODALITIES)}")
    if flag in items.columns:
        ok = ok & pl.col(flag).fill_null(False).cast(pl.Boolean)
    values = items.select(pl.when(ok).then(src).otherwise(None).alias("s"))["s"].to_list()
    if modality == "image":
        root = Path(root)
        # Relative paths are relative to the project root (the stage's cwd), as ingest writes them.
        values = [None if v is None else str(v if Path(v).is_absolute() else root / v) for v in values]
    return values


# --------------------------------------------------------------------------------------------
# Distributed context (a no-op single process)
# --------------------------------------------------------------------------------------------

@dataclass
class Dist:
    """Rank, world size and a barrier; `Dist()` is the single-process case."""

    rank: int = 0
    world: int = 1
    barrier: Callable[[], None] = field(default=lambda: None)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def torch_dist() -> Dist:
    """The torch.distributed context when a process group is initialised, else single-process."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return Dist(dist.get_rank(), dist.get_world_size(), dist.barrier)
    return Dist()


# --------------------------------------------------------------------------------------------
# The loop
# --------------------------------------------------------------------------------------------

class _Items(Dataset):
    """Decodes one item per index in a worker; failures become (placeholder, reason)."""

    def __init__(self, sources: list[Optional[str]], encoder: Encoder) -> None:
        self.sources, self.encoder = sources, encoder

    def __len__(self) -> int:
        return len(self.sources)

    def __getitem__(self, row: int) -> tuple[Any, Optional[str]]:
        src = self.sources[row]
        try:
            return self.encoder.load_item(src), None
        except Exception as err:  # any decode error is a counted, reported skip, never a crash
            return self.encoder.placeholder(), f"{type(err).__name__}: {err}"[:300]


class _Collate:
    def __init__(self, encoder: Encoder) -> None:
        self.encoder = encoder

    def __call__(self, batch: list[tuple[Any, Optional[str]]]) -> tuple[Any, list[Optional[str]]]:
        return self.encoder.collate([x for x, _ in batch]), [e for _, e in batch]


def fingerprint(encoder: Encoder, sources: list[Optional[str]], batch_size: int, chunk_size: int,
                content_keys: Optional[list[Optional[str]]] = None) -> str:
    """Everything that shapes chunk contents; chunks from a different fingerprint are discarded.

    `content_keys` (e.g. the sha256 of each image file) make the contents part of it: a picture
    replaced under the same name invalidates the chunks of an interrupted run."""
    h = hashlib.sha256()
    h.update(json.dumps({"encoder": encoder.name, "tokens": encoder.n_tokens, "batch_size": batch_size,
                         "chunk_size": chunk_size, "device": encoder.device.type, "chunk_format": "arrow-ipc",
                         "versions": library_versions()}, sort_keys=True).encode())
    for s in sources:
        h.update(b"\x00" if s is None else s.encode() + b"\x01")
    for k in content_keys or ():
        h.update(b"\x00" if k is None else k.encode() + b"\x02")
    return h.hexdigest()


def chunk_dir_for(out_path: Path) -> Path:
    """Chunks live beside the features folder, not in it: `dvc repro` deletes a stage's outputs
    before running it, which would throw away the completed chunks of an interrupted run."""
    return out_path.parent.parent / f"{out_path.parent.name}.partial" / out_path.stem


def _chunk_file(cdir: Path, k: int) -> Path:
    return cdir / f"chunk-{k:06d}.arrow"


def extract_modality(
    sources: list[Optional[str]],
    encoder: Encoder,
    out_path: str | Path,
    *,
    batch_size: int,
    chunk_size: int,
    num_workers: int,
    dist: Optional[Dist] = None,
    progress: bool = True,
    max_chunks: Optional[int] = None,
    metadata: Optional[dict[str, Any]] = None,
    max_failed_fraction: float = 1.0,
    content_keys: Optional[list[Optional[str]]] = None,
    reused: int = 0,
) -> dict[str, Any]:
    """Encode `sources` (item_idx i+1 at position i; None = item lacks the modality) into `out_path`.

    Returns counts (items, extracted, missing, failed, failed_examples) plus timing. When
    `max_chunks` is set, stops after encoding that many chunks and leaves them for a later
    resume (returns with `complete: False`); used to budget work and to test resumption.
    When more than `max_failed_fraction` of the items that have the modality fail to decode,
    raises TooManyFailuresError (count and examples) before writing the feature file, and drops
    the chunks so that repaired inputs are decoded again on the next run.
    """
    dist = dist or Dist()
    out_path = Path(out_path)
    n = len(sources)
    n_chunks = (n + chunk_size - 1) // chunk_size
    cdir = chunk_dir_for(out_path)
    fp = fingerprint(encoder, sources, batch_size, chunk_size, content_keys)
    manifest = cdir / "manifest.json"

    if dist.is_main:
        old = json.loads(manifest.read_text()) if manifest.exists() else None
        if old is None or old.get("fingerprint") != fp:
            if cdir.exists():
                shutil.rmtree(cdir)  # chunks of other inputs/settings can never be reused
            write_json({"fingerprint": fp, "encoder": encoder.name, "items": n, "chunk_size": chunk_size}, manifest)
    dist.barrier()

    done = {k for k in range(n_chunks) if _chunk_file(cdir, k).exists()}
    mine = [k for k in range(n_chunks) if k % dist.world == dist.rank and k not in done]
    if max_chunks is not None:
        mine = mine[:max_chunks]

    # Batches never cross a chunk boundary, so a chunk's contents do not depend on what ran before;
    # inside a chunk, texts are batched longest first to cut padding.
    plan: list[tuple[int, list[list[int]]]] = []
    for k in mine:
        rows = [r for r in range(k * chunk_size, min(n, (k + 1) * chunk_size)) if sources[r] is not None]
        rows.sort(key=lambda r: -encoder.length(sources[r]))  # stable: same order every run
        plan.append((k, [rows[i:i + batch_size] for i in range(0, len(rows), batch_size)]))
    batches = [b for _, bs in plan for b in bs]

    t0 = time.perf_counter()
    n_todo = sum(min(n, (k + 1) * chunk_size) - k * chunk_size for k in mine)
    bar = tqdm(total=n_todo, unit="item", desc=f"extract {encoder.modality} [{encoder.name}]",
               disable=not progress or not dist.is_main, dynamic_ncols=True, smoothing=0.1)
    it = iter(())
    on_cpu = encoder.device.type == "cpu"
    # Text on a CPU is tokenised in this process: tokenising is cheap next to the model, and
    # worker processes would only compete with it for the same cores. Images decode in workers
    # when the CPU budget leaves room beside the model (loader_split); so does text on a GPU.
    requested = num_workers if encoder.modality == "image" or not on_cpu else 0
    workers, model_threads = loader_split(budget(), requested, model_on_cpu=on_cpu)
    # Never more model threads than the caller set (a test or torchrun rank pinning 1, say).
    model_threads = min(model_threads, torch.get_num_threads())
    if batches:
        loader = DataLoader(_Items(sources, encoder), batch_sampler=batches, num_workers=workers,
                            collate_fn=_Collate(encoder), pin_memory=encoder.device.type == "cuda",
                            prefetch_factor=4 if workers > 0 else None)
        it = iter(loader)
    encoded = 0
    threads_before = torch.get_num_threads()
    torch.set_num_threads(model_threads)  # workers + model threads stay within the budget
    try:
        with torch.inference_mode():
            for k, bs in plan:
                _encode_chunk(k, bs, it, encoder, sources, chunk_size, cdir, bar)
                encoded += sum(len(b) for b in bs)
    finally:
        torch.set_num_threads(threads_before)
    bar.close()
    seconds = time.perf_counter() - t0
    dist.barrier()

    complete = all(_chunk_file(cdir, k).exists() for k in range(n_chunks))
    result: dict[str, Any] = {"encoder": encoder.name, "path": str(out_path), "items": n, "chunks": n_chunks,
                              "chunks_resumed": len(done), "encoded_here": encoded, "seconds": seconds,
                              "pools": {"loader_workers": workers, "model_threads": model_threads},
                              "complete": complete}
    if not complete or not dist.is_main:
        dist.barrier()
        return result

    files = [_chunk_file(cdir, k) for k in range(n_chunks)]
    counts = {"items": n, "extracted": 0, "missing": 0, "failed": 0}
    failed_examples: list[dict[str, Any]] = []
    for f in files:
        m = read_chunk_metadata(f)["chunk"]
        for key in ("extracted", "missing", "failed"):
            counts[key] += m[key]
        failed_examples += m["failed_examples"][:MAX_FAILED_EXAMPLES - len(failed_examples)]
    # Items whose vectors come from the reuse cache (`reused`, absent from `sources`) count as
    # decoded, so the failure fraction is over every item with the modality, not just the re-encoded.
    check_failures(encoder, {**counts, "missing": counts["missing"] - reused}, failed_examples,
                   max_failed_fraction, cdir)
    meta = dict(metadata or {})
    meta.update(_encoder_metadata(encoder))
    meta["counts"] = counts
    meta["failed_examples"] = failed_examples
    merge_chunks(files, out_path, meta)
    shutil.rmtree(cdir)
    if cdir.parent.exists() and not any(cdir.parent.iterdir()):
        cdir.parent.rmdir()
    dist.barrier()
    result.update(counts)
    result["failed_examples"] = failed_examples
    return result


class TooManyFailuresError(ValueError):
    """More inputs failed to decode than extract.max_failed_fraction allows."""


def check_failures(encoder: Encoder, counts: dict[str, int], examples: list[dict[str, Any]],
                   max_fraction: float, cdir: Path) -> None:
    """Raise TooManyFailuresError when failed / (items with the modality) > `max_fraction`."""
    present = counts["items"] - counts["missing"]
    if not present or counts["failed"] <= max_fraction * present:
        return
    shutil.rmtree(cdir, ignore_errors=True)  # the same paths, repaired, must be decoded again
    shown = "\n".join(f"  item_idx {e['item_idx']}: {e['source']}: {e['reason']}" for e in examples[:5])
    raise TooManyFailuresError(
        f"extract {encoder.modality} [{encoder.name}]: {counts['failed']} of {present} inputs failed "
        f"to decode ({counts['failed'] / present:.1%} > extract.max_failed_fraction={max_fraction}); "
        f"first failures:\n{shown}\nFix or remove those files (and re-run ingest), or raise "
        "extract.max_failed_fraction to accept zero vectors for them")


def _encode_chunk(k: int, batches: list[list[int]], it, encoder: Encoder, sources: list[Optional[str]],
                  chunk_size: int, cdir: Path, bar) -> Path:
    """Encode one chunk's batches (pulled in order from the shared loader) and write it atomically."""
    lo, hi = k * chunk_size, min(len(sources), (k + 1) * chunk_size)
    m = hi - lo
    vector = np.zeros((m, encoder.dim), dtype=np.float32)
    has = np.zeros(m, dtype=bool)
    tokens = np.zeros((m, encoder.n_tokens, encoder.token_dim), dtype=np.float16) if encoder.n_tokens else None
    tmask = np.zeros((m, encoder.n_tokens), dtype=bool) if encoder.n_tokens else None
    failed: list[dict[str, Any]] = []
    n_failed = 0
    for rows in batches:
        inputs, errors = next(it)
        out = encoder.encode(inputs)
        ok = np.array([e is None for e in errors])
        sel = slice(None) if ok.all() else ok  # avoid a copy in the common case
        pos = np.asarray(rows)[sel] - lo
        vector[pos] = out.vector.numpy()[sel]  # [b, d]; failed rows stay zero
        has[pos] = True
        if tokens is not None:
            tokens[pos] = out.tokens.numpy()[sel]  # [b, T, d_tok], cast to float16 on assignment
            tmask[pos] = out.token_mask.numpy()[sel]
        for r, e in zip(rows, errors):
            if e is not None:
                n_failed += 1
                if len(failed) < MAX_FAILED_EXAMPLES:
                    failed.append({"item_idx": r + 1, "source": sources[r], "reason": e})
        bar.update(len(rows))
    n_present = sum(s is not None for s in sources[lo:hi])
    bar.update(m - n_present)  # items lacking the modality take no model time
    table = features_table(np.arange(lo + 1, hi + 1), vector, has, tokens, tmask)
    info = {"index": k, "extracted": int(has.sum()), "missing": m - n_present, "failed": n_failed,
            "failed_examples": failed}
    return write_chunk(table, _chunk_file(cdir, k), metadata={"chunk": info})


def _encoder_metadata(encoder: Encoder) -> dict[str, Any]:
    extra = ("open_clip_torch", "sentence-transformers", "transformers", "efficientnet-lite-pytorch")
    meta = {
        "encoder": encoder.name,
        "modality": encoder.modality,
        "dims": {"vector": encoder.dim, "tokens": encoder.n_tokens,
                 "token_dim": encoder.token_dim if encoder.n_tokens else 0},
        "tokens_dtype": "float16" if encoder.n_tokens else None,
        "vector_dtype": "float32",
        "versions": library_versions(extra),
    }
    meta.update(encoder.metadata())
    if encoder.n_tokens and encoder.token_dim != encoder.dim:
        meta["note"] = f"token states are {encoder.token_dim}-d while the pooled vector is {encoder.dim}-d"
    return meta

