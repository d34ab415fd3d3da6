"""Reading the `recommend@<model>` export, and the few ingest rows `mmrec recommend` shows.

Everything here reads Parquet row groups selected by their min/max statistics (the files are
sorted by the key: recommendations.parquet by `user_id`, interactions.parquet by user,
items.parquet by `item_idx`), so answering one user reads a few small groups, never a whole
table. Only pyarrow is imported, never torch or polars: `mmrec recommend`'s fast path starts in
a fraction of a second and stays far below the model's memory.
"""

from __future__ import annotations

import bisect
import os
from pathlib import Path
from typing import Any, Iterable, Mapping

import pyarrow as pa
import pyarrow.parquet as pq

from mmrec import paths
from mmrec.io import file_sha256, read_parquet_metadata

RECS_FILE = "recommendations.parquet"
ITEM_VECTORS_FILE = "item_vectors.parquet"
USER_VECTORS_FILE = "user_vectors.parquet"
#: Schema-metadata key of recommendations.parquet holding how the export was made (see export.py).
META_KEY = "mmrec_recommend"
FORMAT_VERSION = 1
#: The inputs an export depends on, by the name its metadata records them under.
INPUT_NAMES = ("model.pt", "interactions.parquet", "items.parquet")


def fingerprint(path: Path) -> dict[str, Any]:
    """{size, mtime_ns, sha256} of a file: what `stale_inputs` compares."""
    st = Path(path).stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": file_sha256(path)}


def stale_inputs(recorded: Mapping[str, Mapping[str, Any]], current: Mapping[str, Path]) -> list[str]:
    """The names in `current` whose file differs from its recorded fingerprint (or is missing).

    Size first, then modification time; only a file of the same size with another mtime is
    hashed, because `dvc checkout` rewrites files with new mtimes but the same bytes: those are
    not stale, and hashing only then keeps the usual lookup free of reading the model.
    """
    stale = []
    for name, path in current.items():
        rec = recorded.get(name)
        try:
            st = os.stat(path)
        except OSError:
            stale.append(name)
            continue
        if rec is None or st.st_size != rec.get("size"):
            stale.append(name)
        elif st.st_mtime_ns != rec.get("mtime_ns") and file_sha256(path) != rec.get("sha256"):
            stale.append(name)
    return stale


def export_info(export_dir: Path) -> dict[str, Any]:
    """The metadata the export stage wrote into recommendations.parquet (model, k, mask_history,
    max_len, input fingerprints, ...). Raises FileNotFoundError / ValueError naming the file."""
    path = Path(export_dir) / RECS_FILE
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    try:
        meta = read_parquet_metadata(path).get(META_KEY)
    except pa.ArrowInvalid as err:
        raise ValueError(f"{path}: not a readable Parquet file ({err})") from None
    if not isinstance(meta, dict) or meta.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: no {META_KEY!r} metadata of format {FORMAT_VERSION} "
                         "(written by another mmrec version; re-run the recommend stage)")
    return meta


class ExportUnusable(Exception):
    """The export cannot answer this request; the message says why (missing, stale, ...)."""


def export_inputs(layout: paths.Layout, model: str, root: str | Path = ".") -> dict[str, Path]:
    """The files an export of `model` is made from, under the names its metadata records."""
    ingest = paths.ingest_dir(layout, root)
    return {"model.pt": paths.model_dir(layout, model, root) / "model.pt",
            "interactions.parquet": ingest / "interactions.parquet",
            "items.parquet": ingest / "items.parquet"}


def usable_export(export_dir: Path, inputs: Mapping[str, Path], *, model: str, k: int,
                  mask_history: bool) -> dict[str, Any]:
    """The export's metadata (see `export_info`) when it can answer a request for `k` items
    under `mask_history`; else ExportUnusable saying why: missing or unreadable, made for another
    model, stale inputs, too few items per user, or the other masking."""
    try:
        info = export_info(export_dir)
    except (FileNotFoundError, ValueError) as err:
        raise ExportUnusable(str(err)) from None
    path = Path(export_dir) / RECS_FILE
    if info.get("model") != model:
        raise ExportUnusable(f"{path} was exported for model {info.get('model')!r}, not {model!r}")
    stale = stale_inputs(info.get("inputs", {}), inputs)
    if stale:
        raise ExportUnusable(f"{path} is stale: {', '.join(stale)} changed since the export")
    if k > int(info["k"]):
        raise ExportUnusable(f"{path} holds the top {info['k']} items per user, fewer than -k {k}")
    if bool(info["mask_history"]) != mask_history:
        state = "masked" if info["mask_history"] else "not masked"
        raise ExportUnusable(f"{path} was exported with history {state} (recommend.mask_history)")
    return info


def _leaf_index(meta: pq.FileMetaData, column: str) -> int:
    paths = [meta.schema.column(i).path for i in range(meta.num_columns)]
    if column not in paths:
        raise ValueError(f"no column {column!r}")
    return paths.index(column)


def read_matching(path: Path, column: str, values: Iterable[Any],
                  columns: list[str] | None = None) -> pa.Table:
    """The rows of `path` whose `column` is one of `values`, in file order.

    Only the row groups whose min/max statistics of `column` can hold a value are read (a group
    without statistics is read), so on a file sorted by `column` this reads a few groups.
    Raises FileNotFoundError / ValueError naming the file and the missing column.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found")
    wanted = list(dict.fromkeys(values))
    pf = pq.ParquetFile(path)
    meta = pf.metadata
    try:
        leaf = _leaf_index(meta, column)
        missing = [c for c in (columns or []) if c not in pf.schema_arrow.names]
        if missing:
            raise ValueError(f"no column {missing[0]!r}")
    except ValueError as err:
        raise ValueError(f"{path}: {err} (columns: {', '.join(pf.schema_arrow.names)})") from None
    # A group is read when some wanted value lies in its [min, max]: a bisection in the sorted
    # values per group, so many values against many groups stays cheap.
    ordered = sorted(wanted)
    groups = []
    for g in range(meta.num_row_groups):
        stats = meta.row_group(g).column(leaf).statistics
        if stats is None or not stats.has_min_max:
            groups.append(g)
            continue
        at = bisect.bisect_left(ordered, stats.min)
        if at < len(ordered) and ordered[at] <= stats.max:
            groups.append(g)
    read_cols = None if columns is None else list(dict.fromkeys([*columns, column]))
    if groups:
        table = pf.read_row_groups(groups, columns=read_cols)
    else:
        table = pf.schema_arrow.empty_table().select(read_cols or pf.schema_arrow.names)
    # Rows are selected by slicing runs of matching rows rather than with a compute filter:
    # building any Arrow value from Python objects (the filter's value set, a scalar) makes
    # pyarrow import pandas, a third of a second `mmrec recommend` would pay for nothing.
    wanted_set = set(wanted)
    hits = [i for i, v in enumerate(table[column].to_pylist()) if v in wanted_set]
    runs: list[list[int]] = []
    for i in hits:
        if runs and runs[-1][1] == i:
            runs[-1][1] = i + 1
        else:
            runs.append([i, i + 1])
    out = pa.concat_tables([table.slice(a, b - a) for a, b in runs]) if runs else table.slice(0, 0)
    return out if columns is None else out.select(columns)


def known_ids(path: Path, column: str, n: int = 5) -> list[str]:
    """The first `n` distinct values of `column` (read from the first row group only): examples
    for an error message about an unknown id."""
    pf = pq.ParquetFile(path)
    if pf.metadata.num_row_groups == 0:
        return []
    first = pf.read_row_group(0, columns=[column])[column].to_pylist()
    return [str(v) for v in dict.fromkeys(first)][:n]


def user_history(interactions_path: Path, user_id: str) -> tuple[int, pa.Table]:
    """(user_idx, the user's interactions oldest first) for a raw user id.

    interactions.parquet is sorted by user then time with a stable tie-break, so the file order
    is the history order. An unknown id is a KeyError that shows a few known ones.
    """
    interactions_path = Path(interactions_path)
    if not interactions_path.exists():
        raise FileNotFoundError(f"{interactions_path}: not found (run the ingest stage first)")
    rows = read_matching(interactions_path, "user_id", [str(user_id)])
    if rows.num_rows == 0:
        raise KeyError(f"user {user_id!r} is not in {interactions_path}; known ids look like: "
                       f"{', '.join(known_ids(interactions_path, 'user_id'))}")
    return int(rows["user_idx"][0].as_py()), rows


def item_rows(items_path: Path, ids: list[int]) -> dict[int, dict[str, Any]]:
    """item_idx -> {item_idx, item_id, text, image_path} for the given ids, from ingest's
    items.parquet or an export's item_vectors.parquet (same columns, small row groups)."""
    items_path = Path(items_path)
    if not items_path.exists():
        raise FileNotFoundError(f"{items_path}: not found (run the ingest stage first)")
    table = read_matching(items_path, "item_idx", [int(i) for i in ids],
                          ["item_idx", "item_id", "text", "image_path"])
    return {int(r["item_idx"]): r for r in table.to_pylist()}


USER_COLUMNS = ["user_id", "user_idx", "n_interactions", "history", "history_timestamp"]


def export_user(export_dir: Path, user_id: str) -> dict[str, Any] | None:
    """One user's row of the export's user_vectors.parquet without the vector (user_id, user_idx,
    n_interactions, history, history_timestamp: the model's input, oldest first), or None for a
    user the export does not hold."""
    rows = read_matching(Path(export_dir) / USER_VECTORS_FILE, "user_id", [str(user_id)], USER_COLUMNS)
    return rows.to_pylist()[0] if rows.num_rows else None


def lookup_user(export_dir: Path, user_id: str) -> pa.Table:
    """The exported rows of one raw user id (user_id, user_idx, rank, item_id, item_idx, score),
    in rank order; no rows for a user the export does not hold (`user_history` tells an unknown
    user from one whose every item is already in their history)."""
    return read_matching(Path(export_dir) / RECS_FILE, "user_id", [str(user_id)])
