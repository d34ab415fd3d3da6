"""The serving index of `recommend@<model>`: one user's answer from SQLite, standard library only.

`recommendations.parquet` is the export users open with polars or duckdb; `recommendations.sqlite`
beside it holds the same top-k rows keyed for point lookups, the users' model inputs and the
item texts, so `mmrec recommend --user` answers a known user without importing numpy, pyarrow,
pydantic or torch: a fresh process is Python start-up plus a few B-tree reads (BENCHMARKS.md).

Tables (all written once by the export, read-only afterwards):

- `meta(key, value)`: key `export` holds the JSON the Parquet file's `mmrec_recommend` metadata
  holds too (model, k, mask_history, max_len, format_version, and the fingerprints of every
  input: model.pt, the ingest tables, the feature and teacher files the model reads).
- `users(user_id PK, user_idx, n_interactions, history, history_timestamp, rec_items,
  rec_scores)`: one row per user, so an answer is one B-tree read: the model's input (the last
  max_len items, oldest first) and the top-k in rank order, as packed native-endian arrays
  (int32 item_idx, int64 timestamps, float32 scores: the Parquet file's values, bit for bit;
  `unpack` reads them, `array.array` anywhere).
- `items(item_idx PK, item_id, text, image_path)`.

Nothing here imports anything beyond the standard library, `mmrec.paths` and `mmrec.hashing`; keep it so
(tests/serving/test_serving.py checks it in a fresh interpreter).
"""

from __future__ import annotations

import json
import os
import sqlite3
from array import array
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from mmrec import paths
from mmrec.hashing import file_sha256

INDEX_FILE = "recommendations.sqlite"
FORMAT_VERSION = 3
#: `recommend.mask_history`'s default (RecommendParams uses it), read here when params.yaml
#: leaves the key out, so the fast path and the validated params cannot disagree.
DEFAULT_MASK_HISTORY = True

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE users (user_id TEXT PRIMARY KEY, user_idx INTEGER NOT NULL,
                    n_interactions INTEGER NOT NULL, history BLOB NOT NULL,
                    history_timestamp BLOB NOT NULL, rec_items BLOB NOT NULL,
                    rec_scores BLOB NOT NULL) WITHOUT ROWID;
CREATE TABLE items (item_idx INTEGER PRIMARY KEY, item_id TEXT, text TEXT, image_path TEXT);
"""
#: array typecodes of the packed columns (int32, int64, float32): numpy's int32/int64/float32
#: `tobytes()` on the writing side.
INT32, INT64, FLOAT32 = "i", "q", "f"
if (array(INT32).itemsize, array(INT64).itemsize, array(FLOAT32).itemsize) != (4, 8, 4):
    raise ImportError("this platform's C int/long long/float sizes differ from int32/int64/float32")


def unpack(typecode: str, blob: bytes) -> list[Any]:
    """A packed column of the index as a list (INT32, INT64 or FLOAT32)."""
    values = array(typecode)
    values.frombytes(blob)
    return values.tolist()


class ExportUnusable(Exception):
    """The export cannot answer this request; the message says why (missing, stale, ...)."""


#: Under the project root, outside every DVC output: the sha256 of each export input already
#: verified, with the size and modification time it had then, so a lookup hashes a large model
#: or feature file only after the file changed. The export itself records only contents (path,
#: size, sha256): a fresh `dvc repro` writes the same bytes, so dvc.lock repeats.
HASH_MEMO = os.path.join(".mmrec", "verified_inputs.json")


def _memo_path(root: str | Path) -> Path:
    return Path(root) / HASH_MEMO


def _read_memo(root: str | Path) -> dict[str, list[Any]]:
    try:
        memo = json.loads(_memo_path(root).read_text(encoding="utf-8"))
        return memo if isinstance(memo, dict) else {}
    except (OSError, ValueError):
        return {}


def remember(root: str | Path, verified: Mapping[str, list[Any]]) -> None:
    """Add {path: [size, mtime_ns, sha256]} to the memo (best effort, atomic: a read-only project
    just hashes again next time)."""
    if not verified:
        return
    from mmrec.atomic import atomic_path  # only when writing: tempfile's imports cost a few ms

    try:
        with atomic_path(_memo_path(root)) as tmp:
            tmp.write_text(json.dumps({**_read_memo(root), **verified}, sort_keys=True), encoding="utf-8")
    except OSError:
        pass


def fingerprint(path: Path, root: str | Path = ".") -> dict[str, Any]:
    """{path (relative to `root` when under it), size, sha256} of a file: what `stale_inputs`
    compares. Relative, so a project moved elsewhere keeps a fresh export; no modification
    time, so the export's bytes depend on contents only. The hash is remembered (HASH_MEMO)."""
    path, root = Path(path), Path(root)
    st = path.stat()
    try:
        shown = path.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        shown = str(path.resolve())
    sha = file_sha256(path)
    remember(root, {shown: [st.st_size, st.st_mtime_ns, sha]})
    return {"path": shown, "size": st.st_size, "sha256": sha}


def stale_inputs(recorded: Mapping[str, Mapping[str, Any]], root: str | Path = ".") -> list[str]:
    """The names of recorded inputs whose file (`root` / its path) differs from its fingerprint
    or is missing.

    Size first; then a file whose size and modification time are those under which its hash
    was last verified (HASH_MEMO) is not read again; any other file is hashed, because
    `dvc checkout` rewrites files with new mtimes but the same bytes: those are not stale, and
    the memo keeps the usual lookup free of reading the model.
    """
    stale, memo, verified = [], _read_memo(root), {}
    for name, rec in recorded.items():
        path = Path(root) / rec.get("path", "")
        try:
            st = os.stat(path)
        except OSError:
            stale.append(name)
            continue
        if st.st_size != rec.get("size"):
            stale.append(name)
            continue
        key = str(rec.get("path", ""))
        if memo.get(key) == [st.st_size, st.st_mtime_ns, rec.get("sha256")]:
            continue
        sha = file_sha256(path)
        if sha != rec.get("sha256"):
            stale.append(name)
        else:
            verified[key] = [st.st_size, st.st_mtime_ns, sha]
    remember(root, verified)
    return stale


def export_inputs(layout: paths.Layout, model: str, root: str | Path = ".") -> dict[str, Path]:
    """The files every export of `model` is made from, under the names its metadata records
    (the export adds the feature and teacher files the model reads)."""
    ingest = paths.ingest_dir(layout, root)
    return {"model.pt": paths.model_dir(layout, model, root) / "model.pt",
            "interactions.parquet": ingest / "interactions.parquet",
            "items.parquet": ingest / "items.parquet"}


def check_usable(meta: Mapping[str, Any], where: Path, root: str | Path, *, model: str, k: int,
                 mask_history: bool) -> None:
    """ExportUnusable saying why an export with metadata `meta` (read from `where`) cannot answer
    a request for `k` items of `model` under `mask_history`: another format or model, stale
    inputs, too few items per user, or the other masking."""
    if meta.get("format_version") != FORMAT_VERSION:
        raise ExportUnusable(f"{where}: written by another mmrec version (format "
                             f"{meta.get('format_version')!r}, not {FORMAT_VERSION}); re-run the recommend stage")
    if meta.get("model") != model:
        raise ExportUnusable(f"{where} was exported for model {meta.get('model')!r}, not {model!r}")
    stale = stale_inputs(meta.get("inputs", {}), root)
    if stale:
        raise ExportUnusable(f"{where} is stale: {', '.join(stale)} changed since the export")
    if k > int(meta["k"]):
        raise ExportUnusable(f"{where} holds the top {meta['k']} items per user, fewer than -k {k}")
    if bool(meta["mask_history"]) != mask_history:
        state = "masked" if meta["mask_history"] else "not masked"
        raise ExportUnusable(f"{where} was exported with history {state} (recommend.mask_history)")


class IndexWriter:
    """Writes `recommendations.sqlite` in one transaction. The caller writes into a folder it
    swaps in whole (the export's atomic_dir), so no journal or fsync is needed here."""

    def __init__(self, path: Path, meta: Mapping[str, Any]) -> None:
        self.path = Path(path)
        self._con = sqlite3.connect(self.path)
        self._con.execute("PRAGMA journal_mode = OFF")
        self._con.execute("PRAGMA synchronous = OFF")
        self._con.executescript(_SCHEMA)
        self._con.execute("BEGIN")
        self._con.execute("INSERT INTO meta VALUES ('export', ?)", (json.dumps(dict(meta), sort_keys=True),))

    def add_items(self, rows: Iterable[tuple[int, Any, Any, Any]]) -> None:
        """(item_idx, item_id, text, image_path) rows."""
        self._con.executemany("INSERT INTO items VALUES (?, ?, ?, ?)", rows)

    def add_users(self, rows: Iterable[tuple[str, int, int, bytes, bytes, bytes, bytes]]) -> None:
        """(user_id, user_idx, n_interactions, history, history_timestamp, rec_items, rec_scores)
        rows, the last four packed (INT32, INT64, INT32, FLOAT32): the model input oldest first,
        the top-k in rank order."""
        self._con.executemany("INSERT INTO users VALUES (?, ?, ?, ?, ?, ?, ?)", rows)

    def close(self) -> None:
        try:
            self._con.commit()
        finally:
            self._con.close()


def answer(model: str, user: str | None, user_idx: int | None, n_interactions: int, mask_history: bool,
           source: str, history: Sequence[int], timestamps: Sequence[Any] | None, max_len: int,
           ids: Sequence[int], scores: Sequence[float], items: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """The JSON-ready answer of `mmrec recommend`, from either source (the index or the model):
    the last max_len history items with their timestamps, and the ranked items, each shown with
    its item_id, text and image_path from `items` (item_idx -> row)."""
    recent = list(history)[-max_len:]
    times = list(timestamps)[-max_len:] if timestamps is not None else [None] * len(recent)

    def item(i: int) -> dict[str, Any]:
        r = items.get(i, {})
        return {"item_idx": i, "item_id": r.get("item_id"), "text": r.get("text"), "image_path": r.get("image_path")}

    return {
        "model": model, "user_id": user, "user_idx": user_idx, "n_interactions": n_interactions,
        "mask_history": mask_history, "source": source,
        "history": [{**item(i), "timestamp": t} for i, t in zip(recent, times)],
        "recommendations": [{"rank": r + 1, "score": s, **item(i)} for r, (i, s) in enumerate(zip(ids, scores))],
    }


def _connect_read_only(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"{Path(path).resolve().as_uri()}?mode=ro", uri=True)


def answer_from_index(index: Path, root: str | Path, *, model: str, user: str, k: int,
                      mask_history: bool) -> dict[str, Any]:
    """`answer` for a known user from the export's index: a few primary-key reads.

    ExportUnusable when the index cannot answer (missing, unreadable, stale, fewer than k items,
    other masking: the caller falls back to the model); KeyError, with a few known ids, when the
    export is fresh and does not hold the user (so neither does interactions.parquet).
    """
    index = Path(index)
    if not index.exists():
        raise ExportUnusable(f"{index}: not found")
    try:
        con = _connect_read_only(index)
        try:
            found = con.execute("SELECT value FROM meta WHERE key = 'export'").fetchone()
            if found is None:
                raise ExportUnusable(f"{index}: no export metadata (re-run the recommend stage)")
            meta = json.loads(found[0])
            check_usable(meta, index, root, model=model, k=k, mask_history=mask_history)
            row = con.execute("SELECT user_idx, n_interactions, history, history_timestamp, rec_items, "
                              "rec_scores FROM users WHERE user_id = ?", (str(user),)).fetchone()
            if row is None:
                known = [r[0] for r in con.execute("SELECT user_id FROM users ORDER BY user_id LIMIT 5")]
                source = meta["inputs"]["interactions.parquet"]["path"]
                raise KeyError(f"user {user!r} is not in {index} (nor, as the export is fresh, in "
                               f"{source}); known ids look like: {', '.join(known)}")
            user_idx, n_interactions = row[0], row[1]
            history, times = unpack(INT32, row[2]), unpack(INT64, row[3])
            ids, scores = unpack(INT32, row[4])[:k], unpack(FLOAT32, row[5])[:k]
            max_len = int(meta["max_len"])
            wanted = sorted(set(ids) | set(history[-max_len:]))
            marks = ",".join("?" * len(wanted))
            items = {r[0]: {"item_id": r[1], "text": r[2], "image_path": r[3]} for r in con.execute(
                f"SELECT item_idx, item_id, text, image_path FROM items WHERE item_idx IN ({marks})", wanted)}
        finally:
            con.close()
    except sqlite3.Error as err:
        raise ExportUnusable(f"{index}: not a readable index ({err}); re-run the recommend stage") from None
    return answer(model, user, user_idx, n_interactions, mask_history, "export", history, times, max_len,
                  ids, scores, items)
