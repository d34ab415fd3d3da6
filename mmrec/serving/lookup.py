"""Point reads of sorted Parquet files: the ingest rows `mmrec recommend` needs when the model
scores a user (no fresh export, or an ad-hoc history), and the export's file names.

Everything here reads Parquet row groups selected by their min/max statistics (the files are
sorted by the key: interactions.parquet by user, items.parquet by `item_idx`), so one user's
rows come from a few small groups, never a whole table. Only pyarrow is imported, never torch or
polars. A known user with a fresh export is answered from its SQLite index (`serving.py`).
"""

from __future__ import annotations

import bisect
from pathlib import Path
from typing import Any, Iterable

import pyarrow as pa
import pyarrow.parquet as pq

RECS_FILE = "recommendations.parquet"
ITEM_VECTORS_FILE = "item_vectors.parquet"
USER_VECTORS_FILE = "user_vectors.parquet"
#: Schema-metadata key of recommendations.parquet holding how the export was made (see export.py).
META_KEY = "mmrec_recommend"


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
