"""Reading the export: one user's rows as in the file, from one row group; when the export may
answer (fresh, enough items, same masking) and when not."""

from __future__ import annotations

import os

import polars as pl
import pyarrow.parquet as pq
import pytest
from evaluate_fakes import FakeModel, tiny_params, write_interactions, write_trained_project

import mmrec.evaluate.export as export
from mmrec.evaluate.lookup import (
    RECS_FILE,
    ExportUnusable,
    export_inputs,
    item_rows,
    lookup_user,
    read_matching,
    usable_export,
    user_history,
)
from mmrec.evaluate.params import RecommendParams

N_ITEMS, N_USERS = 15, 30


@pytest.fixture
def exported(tmp_path, monkeypatch):
    """A tiny project with sasrec's export (k 6, 4 users per row group)."""
    write_trained_project(tmp_path, N_USERS, N_ITEMS, weights=b"weights-v1")
    params = tiny_params().model_copy(update={"recommend": RecommendParams(k=6, row_group_size=4)})
    monkeypatch.setattr(export, "_load_model", lambda *a, **k: FakeModel(N_ITEMS, dim=4, seed=1, max_len=5))
    export.run(params, tmp_path, "sasrec")
    return tmp_path, params, tmp_path / "data" / "tiny" / "recommendations" / "sasrec"


def test_lookup_returns_the_files_rows(exported):
    _, _, out = exported
    whole = pl.read_parquet(out / RECS_FILE)
    for uid in whole["user_id"].unique().to_list():
        got = pl.from_arrow(lookup_user(out, uid))
        assert got.equals(whole.filter(pl.col("user_id") == uid)), uid
        assert got["rank"].to_list() == list(range(1, got.height + 1))
    assert lookup_user(out, "nobody").num_rows == 0


def test_lookup_reads_one_row_group(exported, monkeypatch):
    _, _, out = exported
    read = []
    real = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups",
                        lambda self, groups, **kw: read.append(list(groups)) or real(self, groups, **kw))
    uid = pl.read_parquet(out / RECS_FILE)["user_id"].unique(maintain_order=True)[9]   # third group
    assert lookup_user(out, uid).num_rows == 6
    assert read == [[2]]


def test_read_matching_names_a_missing_column(exported):
    _, _, out = exported
    with pytest.raises(ValueError, match=r"recommendations.parquet: no column 'user'"):
        read_matching(out / RECS_FILE, "user", ["x"])
    with pytest.raises(FileNotFoundError, match="nope.parquet: not found"):
        read_matching(out / "nope.parquet", "user_id", ["x"])


def test_usable_export_says_why_not(exported):
    root, params, out = exported
    inputs = export_inputs(params, "sasrec", root)
    assert usable_export(out, inputs, model="sasrec", k=6, mask_history=True)["max_len"] == 5
    cases = [({"k": 7}, "holds the top 6 items per user, fewer than -k 7"),
             ({"mask_history": False}, "exported with history masked"),
             ({"model": "kdsr"}, "exported for model 'sasrec', not 'kdsr'")]
    for change, why in cases:
        with pytest.raises(ExportUnusable, match=why):
            usable_export(out, inputs, **{"model": "sasrec", "k": 6, "mask_history": True, **change})
    with pytest.raises(ExportUnusable, match="recommendations.parquet: not found"):
        usable_export(out.parent / "kdsr", inputs, model="sasrec", k=6, mask_history=True)


def test_staleness_follows_content_not_mtime(exported):
    root, params, out = exported
    inputs = export_inputs(params, "sasrec", root)
    model_pt = inputs["model.pt"]
    st = model_pt.stat()
    os.utime(model_pt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))   # `dvc checkout`: same bytes
    usable_export(out, inputs, model="sasrec", k=6, mask_history=True)
    model_pt.write_bytes(b"weights-v2")                                 # retrained: same size
    os.utime(model_pt, ns=(st.st_atime_ns, st.st_mtime_ns + 2 * 10**9))
    with pytest.raises(ExportUnusable, match="stale: model.pt changed since the export"):
        usable_export(out, inputs, model="sasrec", k=6, mask_history=True)
    model_pt.write_bytes(b"weights-v1")
    write_interactions(root, N_USERS + 1, N_ITEMS)                      # re-ingested
    with pytest.raises(ExportUnusable, match=r"stale: .*interactions.parquet"):
        usable_export(out, inputs, model="sasrec", k=6, mask_history=True)


def test_user_history_and_item_rows(exported):
    root, _, _ = exported
    ingest = root / "data" / "tiny" / "ingest"
    inter = pl.read_parquet(ingest / "interactions.parquet")
    uid = inter["user_id"][-1]
    user_idx, rows = user_history(ingest / "interactions.parquet", uid)
    assert user_idx == N_USERS - 1
    assert rows["item_idx"].to_pylist() == inter.filter(pl.col("user_id") == uid)["item_idx"].to_list()
    with pytest.raises(KeyError, match=r"user 'carol' is not in .*interactions.parquet; known ids look like: U"):
        user_history(ingest / "interactions.parquet", "carol")
    info = item_rows(ingest / "items.parquet", [3, 4, 99])
    assert sorted(info) == [3, 4] and info[3]["item_id"] == "I0003" and info[4]["image_path"] is None
