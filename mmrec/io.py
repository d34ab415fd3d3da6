"""Atomic file output, seeding and device choice shared by every stage."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sys
import random
import shutil
import tempfile
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq


def _umask() -> int:
    mask = os.umask(0)  # the only way to read it; restored at once
    os.umask(mask)
    return mask


# Read once at import: os.umask is process-wide, so probing it per write would race with threads.
FILE_MODE = 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it over `path` only if the block succeeds.

    Readers never see a half-written file: a crash leaves the old file (or none) in place.
    The file gets the mode a plain `open()` would give (0644 under the usual umask), not
    mkstemp's 0600, so written files match the ones DVC restores from its cache.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, FILE_MODE)
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; when the block succeeds it replaces `path`.

    All or nothing: a crash inside the block leaves the previous folder untouched (never new
    items beside old splits), and the swap itself is two renames, so at worst `path` is briefly
    absent, never mixed. Dotfiles of the old folder (DVC's .gitignore) are carried over.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o777 & ~umask)  # mkdtemp makes it private; the output is an ordinary folder
    old = path.parent / f".{path.name}.old-{uuid.uuid4().hex[:12]}"
    try:
        yield tmp
        if path.exists():
            for entry in path.iterdir():
                if entry.name.startswith(".") and not (tmp / entry.name).exists():
                    os.replace(entry, tmp / entry.name)
            os.replace(path, old)
        os.replace(tmp, path)
    finally:
        for leftover in (tmp, old):
            if leftover.exists():
                shutil.rmtree(leftover)


LOCK_FILE = "data/.mmrec.lock"


class StageLockedError(RuntimeError):
    """Another mmrec stage holds the project's lock."""


@contextlib.contextmanager
def stage_lock(root: str | os.PathLike = ".") -> Iterator[None]:
    """Hold `<root>/data/.mmrec.lock` while a stage runs, so two stages (a `dvc repro` stage and an
    `mmrec run`, or two `mmrec run`s) never write the same outputs at once: the second is refused
    at once, naming the holder. An OS lock (flock): it dies with its process, never goes stale.
    Under torchrun only rank 0 takes it (the ranks of one stage work together)."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    path = Path(root) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "unknown process"
            raise StageLockedError(f"{path}: another mmrec stage is running in this project ({holder}); "
                                   "wait for it to finish (the lock is released when it exits)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n")
        fh.flush()
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# pyarrow's default largest row group (rows): write_table cuts a table into groups this long.
ROW_GROUP_ROWS = 1024 * 1024


def _arrow_with_metadata(table: pa.Table | Any, metadata: dict[str, Any] | None) -> pa.Table:
    if not isinstance(table, pa.Table):
        table = table.to_arrow()
    if metadata:
        meta = dict(table.schema.metadata or {})
        meta.update({k.encode(): json.dumps(v, sort_keys=True).encode() for k, v in metadata.items()})
        table = table.replace_schema_metadata(meta)
    return table


def write_parquet(table: "pa.Table | Any", path: str | os.PathLike,
                  metadata: dict[str, Any] | None = None) -> Path:
    """Write a pyarrow Table or polars DataFrame atomically, with JSON-encoded schema metadata.

    Written without timestamps or writer-specific varying fields so identical inputs give
    byte-identical files.
    """
    table = _arrow_with_metadata(table, metadata)
    path = Path(path)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def write_parquet_groups(n_rows: int, rows: Callable[[int, int], pa.Table | Any],
                         path: str | os.PathLike, metadata: dict[str, Any] | None = None) -> Path:
    """`write_parquet` for a table built one row group at a time: the same bytes, less memory.

    `rows(offset, length)` gives those rows of the table (pyarrow or polars, the same schema
    every time). Each is written as one contiguous row group of `ROW_GROUP_ROWS` rows, as
    `write_parquet` cuts the whole table, so only one group's rows exist at a time.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        writer = None
        try:
            for offset in range(0, max(n_rows, 1), ROW_GROUP_ROWS):  # an empty table: one group
                part = _arrow_with_metadata(rows(offset, min(ROW_GROUP_ROWS, n_rows - offset)),
                                            metadata).combine_chunks()
                if writer is None:
                    writer = pq.ParquetWriter(tmp, part.schema, compression="zstd")
                writer.write_table(part, row_group_size=ROW_GROUP_ROWS)
        finally:
            if writer is not None:
                writer.close()
    return path


def read_parquet_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata written by `write_parquet` (pandas/polars internals left out)."""
    raw = pq.read_schema(path).metadata or {}
    out: dict[str, Any] = {}
    for k, v in raw.items():
        key = k.decode()
        if key in ("pandas", "ARROW:schema"):
            continue
        try:
            out[key] = json.loads(v)
        except ValueError:
            out[key] = v.decode(errors="replace")
    return out


def write_json(obj: Any, path: str | os.PathLike) -> Path:
    """Write JSON atomically, keys sorted, so reports diff cleanly between runs."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    return path


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def pick_device(device: str = "auto") -> "torch.device":
    """`auto` -> CUDA when present, else CPU; `cuda` without a GPU is an error, not a fallback."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"params device={device!r} but CUDA is not available on this machine")
    return torch.device(device)
