"""recommend@<model>: the exported top-k equals the model's own top-k, whatever the batching,
and the folder is written all or nothing."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import pytest
import torch
from evaluate_fakes import FakeModel, tiny_params, write_interactions, write_items, write_trained_project

from mmrec.io import read_parquet_metadata, write_parquet
from mmrec.models import checkpoint
from mmrec.serving.export import export_recommendations, load_items, load_user_sequences
from mmrec.serving.lookup import ITEM_VECTORS_FILE, META_KEY, RECS_FILE, USER_VECTORS_FILE
from mmrec.serving.params import RecommendParams
from mmrec.serving.recommend import left_pad, top_k, top_k_scores
import mmrec.serving.export as export

N_ITEMS, N_USERS, MAX_LEN = 12, 23, 4


def reference(model: FakeModel, inter: pl.DataFrame, k: int, max_len: int, mask: bool) -> pl.DataFrame:
    """Each user's top-k computed one user at a time in plain Python: full history as the input
    (its last max_len items), padding and (if `mask`) every history item excluded, ties by id."""
    items = model.item_repr().detach()
    rows = []
    for (uid, uidx), g in inter.sort("user_id", maintain_order=True).group_by(
            ["user_id", "user_idx"], maintain_order=True):
        hist = g["item_idx"].to_list()
        s = (model.user_repr(left_pad(hist, max_len)) @ items.T)[0].tolist()
        s[0] = -math.inf
        if mask:
            for i in hist:
                s[i] = -math.inf
        top = [i for i in sorted(range(len(s)), key=lambda i: (-s[i], i)) if s[i] > -math.inf][:k]
        rows += [(uid, uidx, r + 1, f"I{i:04d}", i, s[i]) for r, i in enumerate(top)]
    return pl.DataFrame(rows, orient="row", schema={"user_id": pl.String, "user_idx": pl.Int32, "rank": pl.Int32,
                                                    "item_id": pl.String, "item_idx": pl.Int32,
                                                    "score": pl.Float32})


@pytest.fixture
def tiny(tmp_path):
    write_items(tmp_path, N_ITEMS)
    inter = write_interactions(tmp_path, N_USERS, N_ITEMS)
    ingest = tmp_path / "data" / "tiny" / "ingest"
    seqs = load_user_sequences(ingest / "interactions.parquet")
    items = load_items(ingest / "items.parquet")
    # levels=1: item vectors in {-1, 0, 1}^4, so many scores tie exactly
    return tmp_path, inter, seqs, items, FakeModel(N_ITEMS, dim=4, seed=5, levels=1, max_len=MAX_LEN)


def _export(tmp_path, name, model, seqs, item_ids, **cfg):
    out = tmp_path / name
    out.mkdir()
    export_recommendations(model, seqs, item_ids, out, RecommendParams(**cfg), MAX_LEN)
    return out


def test_top_k_scores_breaks_ties_by_id_and_matches_a_full_sort():
    g = torch.Generator().manual_seed(0)
    scores = torch.randint(-3, 4, (50, 40), generator=g).float()
    scores[scores == 3] = -math.inf
    scores[7, 5:] = -math.inf                                   # fewer finite scores than k
    for k in (1, 5, 12, 40):
        vals, idx = top_k_scores(scores, k)
        for r in range(scores.shape[0]):
            want = sorted(range(40), key=lambda i: (-scores[r, i].item(), i))[:k]
            assert idx[r].tolist() == want, (k, r)
            assert vals[r].tolist() == scores[r, want].tolist()


@pytest.mark.parametrize("mask", [True, False])
def test_export_equals_the_models_top_k(tiny, tmp_path, mask):
    _, inter, seqs, item_ids, model = tiny
    out = _export(tmp_path, "out", model, seqs, item_ids, k=5, mask_history=mask, batch_users=4)
    got = pl.read_parquet(out / RECS_FILE)
    want = reference(model, inter, 5, MAX_LEN, mask)
    assert got.equals(want), (got, want)
    assert got["user_id"].is_sorted()
    first = got.filter(pl.col("user_idx") == 0)                 # has seen every item but the last two
    if mask:
        assert sorted(first["item_idx"].to_list()) == [N_ITEMS - 1, N_ITEMS]   # fewer rows than k
        seen = inter.group_by("user_idx").agg(seen=pl.col("item_idx"))
        assert not got.join(seen, on="user_idx").filter(pl.col("item_idx").is_in(pl.col("seen"))).height
    else:
        assert first.height == 5
    meta = read_parquet_metadata(out / RECS_FILE)[META_KEY]
    assert meta["k"] == 5 and meta["mask_history"] is mask and meta["max_len"] == MAX_LEN
    assert meta["n_users"] == N_USERS and meta["n_items"] == N_ITEMS


def test_cli_model_path_gives_the_exported_rows(tiny, tmp_path):
    """`mmrec recommend`'s model path (top_k, one user) and the export agree row for row."""
    _, inter, seqs, item_ids, model = tiny
    got = pl.read_parquet(_export(tmp_path, "out", model, seqs, item_ids, k=6) / RECS_FILE)
    for uid in got["user_id"].unique().to_list()[:8]:
        hist = inter.filter(pl.col("user_id") == uid)["item_idx"].to_list()
        ids, scores = top_k(model, hist, 6, MAX_LEN, mask_history=True)
        rows = got.filter(pl.col("user_id") == uid)
        assert rows["item_idx"].to_list() == ids and rows["score"].to_list() == pytest.approx(scores)


def test_batching_does_not_change_the_file(tiny, tmp_path):
    _, _, seqs, item_ids, model = tiny
    outs = [_export(tmp_path, f"b{b}", model, seqs, item_ids, k=5, batch_users=b, row_group_size=4)
            for b in (1, 3, 7, 1000)]
    first = (outs[0] / RECS_FILE).read_bytes()
    assert all((o / RECS_FILE).read_bytes() == first for o in outs[1:])
    assert all((o / USER_VECTORS_FILE).read_bytes() == (outs[0] / USER_VECTORS_FILE).read_bytes() for o in outs)
    meta = pq.ParquetFile(outs[0] / RECS_FILE).metadata
    assert meta.num_row_groups == math.ceil(N_USERS / 4)      # row_group_size users per group
    groups = [pq.ParquetFile(outs[0] / RECS_FILE).read_row_group(g)["user_id"].unique() for g in range(3)]
    assert [len(u) for u in groups] == [4, 4, 4]


def test_user_rows_hold_the_model_input(tiny, tmp_path):
    _, inter, seqs, item_ids, model = tiny
    users = pl.read_parquet(_export(tmp_path, "out", model, seqs, item_ids, k=5) / USER_VECTORS_FILE)
    assert users["user_id"].is_sorted() and users.height == N_USERS
    for row in users.iter_rows(named=True):
        mine = inter.filter(pl.col("user_id") == row["user_id"])
        assert row["n_interactions"] == mine.height
        assert row["history"] == mine["item_idx"].to_list()[-MAX_LEN:]
        assert row["history_timestamp"] == mine["timestamp"].to_list()[-MAX_LEN:]


def test_vectors_reproduce_the_scores(tiny, tmp_path):
    _, _, seqs, item_ids, model = tiny
    out = _export(tmp_path, "out", model, seqs, item_ids, k=5)
    items = pl.read_parquet(out / ITEM_VECTORS_FILE)
    users = pl.read_parquet(out / USER_VECTORS_FILE)
    assert items["item_idx"].to_list() == list(range(1, N_ITEMS + 1))
    assert items["item_id"].to_list() == [f"I{i:04d}" for i in range(1, N_ITEMS + 1)]
    assert items["text"][2] == "item number 3" and items["image_path"][3] is None
    assert np.array_equal(np.stack(items["vector"].to_list()), model.item_repr().detach()[1:].numpy())
    recs = pl.read_parquet(out / RECS_FILE)
    item_vec = dict(zip(items["item_idx"].to_list(), np.stack(items["vector"].to_list())))
    user_vec = dict(zip(users["user_id"].to_list(), np.stack(users["vector"].to_list())))
    dots = [float(user_vec[u] @ item_vec[i]) for u, i in zip(recs["user_id"], recs["item_idx"])]
    assert dots == pytest.approx(recs["score"].to_list())


def test_stage_writes_the_folder_atomically(tmp_path, monkeypatch):
    write_trained_project(tmp_path, N_USERS, N_ITEMS)
    params = tiny_params()
    model = FakeModel(N_ITEMS, dim=4, seed=5, max_len=MAX_LEN)
    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: model)
    summary = export.run(params, tmp_path, "sasrec")
    out = tmp_path / "data" / "tiny" / "recommendations" / "sasrec"
    assert summary["users"] == N_USERS and summary["rows"] == pl.read_parquet(out / RECS_FILE).height
    meta = read_parquet_metadata(out / RECS_FILE)[META_KEY]
    assert meta["model"] == "sasrec" and set(meta["inputs"]) == {"model.pt", "interactions.parquet", "items.parquet"}
    model_pt = tmp_path / "data/tiny/models/sasrec/model.pt"
    assert meta["inputs"]["model.pt"]["size"] == model_pt.stat().st_size
    assert meta["inputs"]["model.pt"]["path"] == "data/tiny/models/sasrec/model.pt"
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    class Broken(FakeModel):
        calls = 0

        def user_repr(self, history):
            Broken.calls += 1
            if Broken.calls > 1:                                # fails after a batch was written
                raise RuntimeError("out of memory (simulated)")
            return super().user_repr(history)

    monkeypatch.setattr(checkpoint, "load_model", lambda *a, **k: Broken(N_ITEMS, dim=4, seed=9, max_len=MAX_LEN))
    with pytest.raises(RuntimeError, match="simulated"):
        export.run(params.model_copy(update={"recommend": RecommendParams(batch_users=2)}), tmp_path, "sasrec")
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before   # the old export, untouched
    assert sorted(p.name for p in out.parent.iterdir()) == ["sasrec"]  # no temporary folder left


def test_stage_errors_name_the_model_and_file(tmp_path):
    write_items(tmp_path, N_ITEMS)
    write_interactions(tmp_path, N_USERS, N_ITEMS)
    params = tiny_params()
    with pytest.raises(KeyError, match="'odmt' is not in train.models"):
        export.run(params, tmp_path, "odmt")
    with pytest.raises(FileNotFoundError, match="sasrec/model.pt: not found"):
        export.run(params, tmp_path, "sasrec")
    assert export.run(params, tmp_path) == {"skipped": ["sasrec", "kdsr"]}


def test_bad_interactions_are_named(tmp_path):
    path = tmp_path / "interactions.parquet"
    write_parquet(pl.DataFrame({"user_idx": [0], "item_idx": [1]}), path)
    with pytest.raises(ValueError, match=r"interactions.parquet: missing column\(s\) user_id"):
        load_user_sequences(path)
    write_parquet(pl.DataFrame({"user_idx": [1, 0], "user_id": ["b", "a"], "item_idx": [1, 2]}), path)
    with pytest.raises(ValueError, match="not grouped by user_idx"):
        load_user_sequences(path)
    with pytest.raises(FileNotFoundError, match="run the ingest stage"):
        load_user_sequences(tmp_path / "missing.parquet")
    write_parquet(pl.DataFrame({"item_idx": [1, 3], "item_id": ["a", "c"]}), tmp_path / "items.parquet")
    with pytest.raises(ValueError, match=r"items.parquet: missing column\(s\) text, image_path"):
        load_items(tmp_path / "items.parquet")
    write_parquet(pl.DataFrame({"item_idx": [1, 3], "item_id": ["a", "c"], "text": ["x", "y"],
                                "image_path": [None, None]}), tmp_path / "items.parquet")
    with pytest.raises(ValueError, match=r"items.parquet: item_idx must be exactly 1..\d+ in order"):
        load_items(tmp_path / "items.parquet")


def test_model_item_count_must_match_items(tiny, tmp_path):
    _, _, seqs, item_ids, _ = tiny
    (tmp_path / "o").mkdir()
    with pytest.raises(ValueError, match="scores 13 items but items.parquet has 12"):
        export_recommendations(FakeModel(N_ITEMS + 1), seqs, item_ids, tmp_path / "o", RecommendParams(), MAX_LEN)
