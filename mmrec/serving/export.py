"""Stage `recommend@<model>`: every user's top-k items from one trained model, for serving.

Writes `recommendations/<model>/` (one folder, swapped in whole):

- `recommendations.parquet`: `user_id`, `user_idx`, `rank` (1-based), `item_id`, `item_idx`,
  `score`; sorted by `user_id` then rank, `recommend.row_group_size` users per row group, so a
  reader filtering on one user_id reads one small group. The schema metadata `mmrec_recommend`
  records the model, k, masking, the model's max_len and fingerprints of the inputs, which
  `mmrec recommend` checks before answering from the file.
- `user_vectors.parquet`: `user_id`, `user_idx`, `n_interactions`, `history` and
  `history_timestamp` (the model's input: the last max_len items, oldest first), `vector`;
  same order and row groups.
- `item_vectors.parquet`: `item_idx`, `item_id`, `text`, `image_path`, `vector` (the model's item
  table without the padding row), row_group_size items per group. A score is the dot product of
  a user's and an item's vector, so anyone can rescore or filter without the model.
- `recommendations.sqlite`: the same top-k lists, the users' model inputs and the item texts,
  one row per user keyed by user_id (`serving.py`): `mmrec recommend --user` answers from it with the
  standard library only, in tens of milliseconds from a fresh process.

Each user's input is their whole known history (train + valid + test: every interaction in
interactions.parquet), its last max_len items as the model input; with `recommend.mask_history`
every item of that history leaves the ranking. Users are scored `recommend.batch_users` at a
time: memory is bounded by batch_users x (N+1) scores, never all users at once.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import torch

from mmrec import paths
from mmrec.data.items import check_item_idx
from mmrec.io import atomic_dir, module_device, pick_device, read_schema, read_table
from mmrec.models import checkpoint
from mmrec.serving.index import FORMAT_VERSION, INDEX_FILE, IndexWriter, export_inputs, fingerprint
from mmrec.serving.lookup import ITEM_VECTORS_FILE, META_KEY, RECS_FILE, USER_VECTORS_FILE
from mmrec.serving.params import RecommendConfig, RecommendParams
from mmrec.serving.recommend import top_k_scores


@dataclass
class UserSequences:
    """Every user's interactions, oldest first, as one flat array with offsets.

    Users are in `user_id` order (the order of the export). `items[starts[u]:starts[u] +
    lengths[u]]` is user u's history.
    """

    user_id: pa.Array        # [U] string
    user_idx: np.ndarray     # [U] int32
    starts: np.ndarray       # [U] int64
    lengths: np.ndarray      # [U] int64
    items: np.ndarray        # [M] int64 item_idx, grouped by user, time order inside a user
    timestamps: np.ndarray   # [M] int64 seconds (0 when interactions.parquet has none)


def load_user_sequences(interactions_path: Path) -> UserSequences:
    """Read interactions.parquet (sorted by user then time, as ingest writes it)."""
    path = Path(interactions_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run the ingest stage first)")
    need = ["user_idx", "user_id", "item_idx"]
    names = read_schema(path).names
    missing = [c for c in need if c not in names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(names)})")
    table = read_table(path, columns=need + (["timestamp"] if "timestamp" in names else []))
    uidx = table["user_idx"].to_numpy().astype(np.int64)
    if len(uidx) and bool((np.diff(uidx) < 0).any()):
        raise ValueError(f"{path}: rows are not grouped by user_idx (ingest writes them sorted by "
                         "user then time); re-run the ingest stage")
    first = np.flatnonzero(np.r_[True, uidx[1:] != uidx[:-1]]) if len(uidx) else np.zeros(0, np.int64)
    lengths = np.diff(np.r_[first, len(uidx)])
    user_id = table["user_id"].combine_chunks().take(pa.array(first))
    if len(pc.unique(user_id)) != len(first):
        raise ValueError(f"{path}: a user_id maps to several user_idx values")
    # The export is sorted by the raw id users know; ingest numbers users in that order already,
    # but sorting here keeps the file's order right whatever the numbering.
    order = np.asarray(pc.sort_indices(user_id))
    return UserSequences(user_id=user_id.take(pa.array(order)), user_idx=uidx[first][order].astype(np.int32),
                         starts=first[order].astype(np.int64), lengths=lengths[order].astype(np.int64),
                         items=table["item_idx"].to_numpy().astype(np.int64),
                         timestamps=(table["timestamp"].to_numpy().astype(np.int64) if "timestamp" in names
                                     else np.zeros(table.num_rows, dtype=np.int64)))


ITEM_COLUMNS = ["item_idx", "item_id", "text", "image_path"]


def load_items(items_path: Path) -> pa.Table:
    """items.parquet's item_idx, item_id, text, image_path in item_idx order (checked 1..N)."""
    path = Path(items_path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: not found (run the ingest stage first)")
    names = read_schema(path).names
    missing = [c for c in ITEM_COLUMNS if c not in names]
    if missing:
        raise ValueError(f"{path}: missing column(s) {', '.join(missing)} (columns: {', '.join(names)})")
    table = read_table(path, columns=ITEM_COLUMNS).sort_by("item_idx").combine_chunks()
    check_item_idx(table["item_idx"].to_numpy(), path)
    return table


@dataclass
class Batch:
    """Model inputs and history cells of a batch of users (see `batch_inputs`)."""

    inputs: torch.Tensor     # [B, L] long: the last L items, left-padded with 0, most recent last
    rows: torch.Tensor       # [M] batch row of every item of the users' full histories
    seen: torch.Tensor       # [M] those items (what masking removes)
    window: torch.Tensor     # [W] positions in `seqs.items` of the input cells, row-major
    window_len: torch.Tensor  # [B] input cells per user (min(history length, L))


def batch_inputs(seqs: UserSequences, users: np.ndarray, max_len: int) -> Batch:
    """The model inputs and full-history cells of the users at positions `users` of `seqs`."""
    starts = torch.from_numpy(seqs.starts[users])                    # [B]
    lengths = torch.from_numpy(seqs.lengths[users])                  # [B]
    flat = torch.from_numpy(seqs.items)
    pos = (starts + lengths)[:, None] - max_len + torch.arange(max_len)   # [B, L]
    valid = pos >= starts[:, None]
    inputs = torch.where(valid, flat[pos.clamp_min(0)], torch.zeros((), dtype=torch.long))
    rows = torch.repeat_interleave(torch.arange(len(users)), lengths)     # [M]
    offsets = torch.cumsum(lengths, 0) - lengths                          # [B]
    cells = starts[rows] + torch.arange(len(rows)) - offsets[rows]
    return Batch(inputs=inputs, rows=rows, seen=flat[cells], window=pos[valid], window_len=valid.sum(1))


def _list_array(values: np.ndarray, lengths: np.ndarray, type_: pa.DataType) -> pa.Array:
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32)
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values, type=type_))


def _index_rows(users: pa.Table, window_len: np.ndarray, history: np.ndarray, timestamps: np.ndarray,
                per_user: np.ndarray, rec_items: np.ndarray, rec_scores: np.ndarray) -> Iterator[tuple]:
    """The serving index's rows of a batch of users: their flat per-user runs (inputs, top-k)
    cut into one packed blob each (see serving.py)."""
    h_end, r_end = np.cumsum(window_len), np.cumsum(per_user)
    for u, (uid, uidx, n) in enumerate(zip(users["user_id"].to_pylist(), users["user_idx"].to_pylist(),
                                           users["n_interactions"].to_pylist(), strict=True)):
        h = slice(h_end[u] - window_len[u], h_end[u])
        r = slice(r_end[u] - per_user[u], r_end[u])
        yield (uid, uidx, n, history[h].tobytes(), timestamps[h].tobytes(), rec_items[r].tobytes(),
               rec_scores[r].tobytes())


class _GroupedWriter:
    """A ParquetWriter whose row groups hold exactly `users_per_group` users each (the last one
    fewer), whatever the batches fed to it: the file does not depend on recommend.batch_users.
    `add` takes a table of consecutive users' rows and each user's row count."""

    def __init__(self, path: Path, schema: pa.Schema, users_per_group: int) -> None:
        self.writer = pq.ParquetWriter(path, schema, compression="zstd")
        self.per_group = users_per_group
        self.pending: list[pa.Table] = []
        self.counts = np.zeros(0, dtype=np.int64)   # rows of each pending user, in order

    def add(self, table: pa.Table, rows_per_user: np.ndarray) -> None:
        self.pending.append(table)
        self.counts = np.concatenate([self.counts, rows_per_user])
        while len(self.counts) >= self.per_group:
            self._flush(self.per_group)

    def _flush(self, n_users: int) -> None:
        table = pa.concat_tables(self.pending)
        n_rows = int(self.counts[:n_users].sum())
        self.writer.write_table(table.slice(0, n_rows), row_group_size=max(n_rows, 1))
        rest = table.slice(n_rows)
        self.pending = [rest] if rest.num_rows else []
        self.counts = self.counts[n_users:]

    def close(self) -> None:
        if len(self.counts):
            self._flush(len(self.counts))
        self.writer.close()


RECS_SCHEMA = pa.schema([("user_id", pa.string()), ("user_idx", pa.int32()), ("rank", pa.int32()),
                         ("item_id", pa.string()), ("item_idx", pa.int32()), ("score", pa.float32())])


@torch.inference_mode()
def export_recommendations(model: torch.nn.Module, seqs: UserSequences, items_table: pa.Table, out_dir: Path,
                           cfg: RecommendParams, max_len: int, metadata: dict[str, Any] | None = None,
                           device: torch.device | str | None = None) -> dict[str, Any]:
    """Write recommendations.parquet, item_vectors.parquet, user_vectors.parquet and the serving
    index recommendations.sqlite into `out_dir` (an existing folder; the caller makes the swap
    atomic). Returns counts and timings."""
    t0 = time.perf_counter()
    model.eval()
    device = torch.device(device) if device is not None else module_device(model)
    items = model.item_repr().float()                                  # [N+1, D]
    n_items, dim = items.shape[0] - 1, items.shape[1]
    if n_items != items_table.num_rows:
        raise ValueError(f"the model scores {n_items} items but items.parquet has {items_table.num_rows}: "
                         "retrain after re-ingesting")
    item_ids = items_table["item_id"].combine_chunks()
    if not bool(torch.isfinite(items).all()):
        raise ValueError("the model's item vectors hold NaN/inf: the export would be meaningless")
    items_cpu = items.cpu()
    vectors = pa.FixedSizeListArray.from_arrays(items_cpu[1:].reshape(-1).numpy(), dim)
    pq.write_table(items_table.append_column("vector", vectors), out_dir / ITEM_VECTORS_FILE,
                   compression="zstd", row_group_size=cfg.row_group_size)
    meta = {**(metadata or {}), "format_version": FORMAT_VERSION, "k": cfg.k,
            "mask_history": cfg.mask_history, "max_len": max_len, "n_users": len(seqs.user_idx),
            "n_items": n_items, "dim": dim}
    schema = RECS_SCHEMA.with_metadata({META_KEY: json.dumps(meta, sort_keys=True)})
    recs = _GroupedWriter(out_dir / RECS_FILE, schema, cfg.row_group_size)
    index = IndexWriter(out_dir / INDEX_FILE, meta)
    index.add_items(zip(items_table["item_idx"].to_pylist(), item_ids.to_pylist(),
                        items_table["text"].to_pylist(), items_table["image_path"].to_pylist()))
    user_schema = pa.schema([("user_id", pa.string()), ("user_idx", pa.int32()), ("n_interactions", pa.int32()),
                             ("history", pa.list_(pa.int32())), ("history_timestamp", pa.list_(pa.int64())),
                             ("vector", pa.list_(pa.float32(), dim))])
    users_out = _GroupedWriter(out_dir / USER_VECTORS_FILE, user_schema, cfg.row_group_size)
    n_rows = 0
    k = min(cfg.k, n_items)
    try:
        for start in range(0, len(seqs.user_idx), cfg.batch_users):
            users = np.arange(start, min(start + cfg.batch_users, len(seqs.user_idx)))
            b = batch_inputs(seqs, users, max_len)
            u = model.user_repr(b.inputs.to(device)).float()           # [B, D]
            if not bool(torch.isfinite(u).all()):
                raise ValueError(f"the model's user vectors hold NaN/inf (users {start}..{start + len(users) - 1})")
            scores = u @ items.T                                       # [B, N+1]
            scores[:, 0] = -math.inf                                   # padding
            if cfg.mask_history:
                scores[b.rows.to(device), b.seen.to(device)] = -math.inf
            vals, idx = top_k_scores(scores, k)
            vals, idx = vals.cpu(), idx.cpu()
            keep = torch.isfinite(vals)                                # fewer unseen items than k
            per_user = keep.sum(1).numpy().astype(np.int64)
            flat_idx = idx[keep].numpy().astype(np.int32)
            user_pos = np.repeat(users, per_user)
            rec_table = pa.table({
                "user_id": seqs.user_id.take(pa.array(user_pos)),
                "user_idx": pa.array(seqs.user_idx[user_pos]),
                "rank": pa.array((torch.cumsum(keep, 1)[keep]).numpy().astype(np.int32)),
                "item_id": item_ids.take(pa.array(flat_idx - 1)),
                "item_idx": pa.array(flat_idx),
                "score": pa.array(vals[keep].numpy().astype(np.float32)),
            }, schema=RECS_SCHEMA)
            recs.add(rec_table, per_user)
            window, window_len = b.window.numpy(), b.window_len.numpy()
            user_table = pa.table({
                "user_id": seqs.user_id.take(pa.array(users)),
                "user_idx": pa.array(seqs.user_idx[users]),
                "n_interactions": pa.array(seqs.lengths[users].astype(np.int32)),
                "history": _list_array(seqs.items[window].astype(np.int32), window_len, pa.int32()),
                "history_timestamp": _list_array(seqs.timestamps[window], window_len, pa.int64()),
                "vector": pa.FixedSizeListArray.from_arrays(u.cpu().reshape(-1).numpy(), dim),
            }, schema=user_schema)
            users_out.add(user_table, np.ones(len(users), dtype=np.int64))
            index.add_users(_index_rows(user_table, window_len, seqs.items[window].astype(np.int32),
                                        seqs.timestamps[window].astype(np.int64), per_user, flat_idx,
                                        vals[keep].numpy().astype(np.float32)))
            n_rows += int(per_user.sum())
    finally:
        recs.close()
        users_out.close()
        index.close()
    seconds = time.perf_counter() - t0
    n_users = len(seqs.user_idx)
    return {"users": n_users, "items": n_items, "rows": n_rows, "k": cfg.k, "seconds": round(seconds, 2),
            "users_per_s": round(n_users / seconds, 1) if seconds > 0 else None}


def context_inputs(params: RecommendConfig, context: dict[str, Any], root: Path) -> dict[str, Path]:
    """The feature and teacher files a model with checkpoint `context` is rebuilt on (its item
    vectors depend on them), named by their folder: `features/text/<file>`, `teacher/text/<file>`."""
    dirs = [paths.modality_features_dir(params, m, root) for m in context.get("modalities", [])]
    dirs += [paths.modality_teacher_dir(params, m, root) for m in context.get("teachers", [])]
    return {p.relative_to(paths.dataset_dir(params, root)).as_posix(): p
            for d in dirs if d.is_dir() for p in sorted(d.rglob("*")) if p.is_file()}


def run(params: RecommendConfig, root: Path = Path("."), model: str | None = None) -> dict[str, Any]:
    """Export `model`'s recommendations to `recommendations/<model>/`; with `model=None`, every
    `train.models` entry that has a model.pt ({model: summary}, plus `skipped`)."""
    root = Path(root)
    if model is None:
        have, skipped = paths.trained_models(params, params.train.models, root)
        return {**{name: run(params, root, name) for name in have}, "skipped": skipped}
    paths.check_model(params.train.models, model)
    inputs = export_inputs(params, model, root)
    if not inputs["model.pt"].exists():
        raise FileNotFoundError(f"{inputs['model.pt']}: not found (run `mmrec run train {model}` first)")
    # Fingerprints before reads: an input replaced while the export runs makes it stale, never
    # wrongly fresh. model.pt is read once, and its context names the other inputs.
    model_fp = fingerprint(inputs["model.pt"], root)
    ckpt = checkpoint.read_checkpoint(inputs["model.pt"])
    inputs.update(context_inputs(params, ckpt["context"], root))
    recorded = {name: model_fp if name == "model.pt" else fingerprint(p, root) for name, p in inputs.items()}
    device = pick_device(params.device)
    net = checkpoint.load_model(inputs["model.pt"].parent, params, device, root=root, ckpt=ckpt)
    seqs = load_user_sequences(inputs["interactions.parquet"])
    items_table = load_items(inputs["items.parquet"])
    out_dir = paths.recommend_dir(params, model, root)
    with atomic_dir(out_dir) as tmp:
        summary = export_recommendations(net, seqs, items_table, tmp, params.recommend, checkpoint.model_max_len(net),
                                         metadata={"model": model, "inputs": recorded}, device=device)
    return {"model": model, "path": str(out_dir / RECS_FILE), **summary}
