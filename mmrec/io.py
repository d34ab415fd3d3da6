"""Parquet/JSON output (atomic), the stage lock, seeding and device choice shared by every stage."""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import os
import random
import sys
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Callable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

if TYPE_CHECKING:  # imported lazily at run time: most stages never need them
    import polars as pl
    import torch

# Re-exported: stages import every output helper from one place (mmrec.atomic is the
# dependency-free part the serving fast path can use alone).
from mmrec.atomic import DIR_MODE, FILE_MODE, atomic_dir, atomic_path  # noqa: F401

LOCK_FILE = "data/.mmrec.lock"
#: one entry's lock beside it (stage_lock's `entry`)
ENTRY_LOCK = ".mmrec.{entry}.lock"
ENTRY_LOCK_GLOB = ".mmrec.*.lock"


class StageLockedError(RuntimeError):
    """Another mmrec stage holds the project's lock."""


def _holder(fh: IO[str]) -> None:
    fh.seek(0)
    fh.truncate()
    fh.write(f"pid {os.getpid()}: {' '.join(sys.argv)[:200]}\n")
    fh.flush()


def _entry_holders(data: Path) -> list[str]:
    """Who holds an entry lock now (a probe that takes a free one and lets it go at once)."""
    held = []
    for path in sorted(data.glob(ENTRY_LOCK_GLOB)):
        with open(path, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                held.append(fh.read().strip() or f"unknown process ({path.name})")
            else:
                fcntl.flock(fh, fcntl.LOCK_UN)
    return held


def _take(fh: IO[str], mode: int, path: Path, holders: Callable[[], str]) -> None:
    try:
        fcntl.flock(fh, mode | fcntl.LOCK_NB)
    except BlockingIOError:
        raise StageLockedError(f"{path}: another mmrec stage is running in this project ({holders()}); "
                               "wait for it to finish (the lock is released when it exits)") from None


@contextlib.contextmanager
def stage_lock(root: str | os.PathLike = ".", entry: str | None = None) -> Iterator[None]:
    """Hold `<root>/data/.mmrec.lock` while a stage runs, so two stages (a `dvc repro` stage and an
    `mmrec run`, or two `mmrec run`s) never write the same outputs at once: the second is refused
    at once, naming the holder. An OS lock (flock): it dies with its process, never goes stale.
    Under torchrun only rank 0 takes it (the ranks of one stage work together).

    `entry`: the stage writes only that train.models entry's outputs (`mmrec run train <model>`,
    `evaluate <model>`): it shares the project lock with other such stages and holds
    `data/.mmrec.<entry>.lock` alone, so different models train side by side, while a stage
    that writes shared outputs (ingest, extract, teacher, report, a whole-pipeline train) still
    runs alone."""
    if os.environ.get("RANK", "0") != "0":
        yield
        return
    path = Path(root) / LOCK_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as stack:
        fh = stack.enter_context(open(path, "a+"))
        if entry is None:
            # the file names the last exclusive holder; entry holders name themselves in their own
            def holders() -> str:
                return "; ".join(_entry_holders(path.parent)) or _read(fh) or "unknown process"

            _take(fh, fcntl.LOCK_EX, path, holders)
            stack.callback(fcntl.flock, fh, fcntl.LOCK_UN)
            _holder(fh)
        else:
            _take(fh, fcntl.LOCK_SH, path, lambda: _read(fh) or "unknown process")
            stack.callback(fcntl.flock, fh, fcntl.LOCK_UN)
            own = path.parent / ENTRY_LOCK.format(entry=entry)
            efh = stack.enter_context(open(own, "a+"))
            _take(efh, fcntl.LOCK_EX, own, lambda: _read(efh) or "unknown process")
            stack.callback(fcntl.flock, efh, fcntl.LOCK_UN)  # released before the project lock
            _holder(efh)
        yield


def _read(fh: IO[str]) -> str:
    fh.seek(0)
    return fh.read().strip()


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


class UnreadableParquetError(ValueError):
    """A Parquet input that is damaged, truncated or not Parquet at all."""


def _is_read_error(err: BaseException) -> bool:
    if isinstance(err, FileNotFoundError):
        return False  # its message names the file already, and says the fix is another
    if isinstance(err, (pa.ArrowException, OSError)):
        return True
    polars = sys.modules.get("polars")  # only loaded when the reader used it
    return polars is not None and isinstance(err, polars.exceptions.PolarsError)


@contextlib.contextmanager
def reading_parquet(path: str | os.PathLike) -> Iterator[None]:
    """Around a read of `path`: pyarrow's and polars' errors about the file (which rarely name
    it) become one UnreadableParquetError that does; our own errors pass unchanged."""
    try:
        yield
    except Exception as err:
        if not _is_read_error(err):
            raise
        raise UnreadableParquetError(
            f"{path}: not a readable Parquet file ({type(err).__name__}: {' '.join(str(err).split())[:300]}); "
            "re-run the stage that writes it") from err


def read_table(path: str | os.PathLike, columns: list[str] | None = None) -> pa.Table:
    """`pyarrow.parquet.read_table`, with errors naming the file (`reading_parquet`)."""
    with reading_parquet(path):
        return pq.read_table(path, columns=columns)


def read_schema(path: str | os.PathLike) -> pa.Schema:
    """`pyarrow.parquet.read_schema`, with errors naming the file (`reading_parquet`)."""
    with reading_parquet(path):
        return pq.read_schema(path)


def read_frame(path: str | os.PathLike, columns: list[str] | None = None) -> "pl.DataFrame":
    """`polars.read_parquet`, with errors naming the file (`reading_parquet`)."""
    import polars as pl

    with reading_parquet(path):
        return pl.read_parquet(path, columns=columns)


def read_parquet_metadata(path: str | os.PathLike) -> dict[str, Any]:
    """The JSON metadata written by `write_parquet` (pandas/polars internals left out)."""
    raw = read_schema(path).metadata or {}
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


def module_device(model: "torch.nn.Module") -> "torch.device":
    """Where a model's tensors live: its parameters', or its buffers' for a model with nothing
    to learn (content_knn); the CPU for a model with neither."""
    import torch

    for t in itertools.chain(model.parameters(), model.buffers()):
        return t.device
    return torch.device("cpu")


def pick_device(device: str = "auto") -> "torch.device":
    """`auto` -> CUDA when present, else CPU; `cuda` without a GPU is an error, not a fallback."""
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"params device={device!r} but CUDA is not available on this machine")
    return torch.device(device)
