"""Point reads of sorted Parquet files (what the model path of `mmrec recommend` reads): the
rows of one key from the row groups that can hold it, and the ingest rows of one user."""

from __future__ import annotations

import polars as pl
import pyarrow.parquet as pq
import pytest
from evaluate_fakes import export_tiny_project

from mmrec.serving.lookup import RECS_FILE, item_rows, read_matching, user_history

N_ITEMS, N_USERS = 15, 30


@pytest.fixture
def exported(tmp_path, monkeypatch):
    return export_tiny_project(tmp_path, monkeypatch, N_USERS, N_ITEMS)


def test_read_matching_returns_the_files_rows(exported):
    _, _, out = exported
    whole = pl.read_parquet(out / RECS_FILE)
    for uid in whole["user_id"].unique().to_list():
        got = pl.from_arrow(read_matching(out / RECS_FILE, "user_id", [uid]))
        assert got.equals(whole.filter(pl.col("user_id") == uid)), uid
        assert got["rank"].to_list() == list(range(1, got.height + 1))
    assert read_matching(out / RECS_FILE, "user_id", ["nobody"]).num_rows == 0
    two = whole["user_id"].unique(maintain_order=True)[[0, 5]].to_list()
    assert pl.from_arrow(read_matching(out / RECS_FILE, "user_id", two)).equals(
        whole.filter(pl.col("user_id").is_in(two)))


def test_read_matching_reads_one_row_group(exported, monkeypatch):
    _, _, out = exported
    read = []
    real = pq.ParquetFile.read_row_groups
    monkeypatch.setattr(pq.ParquetFile, "read_row_groups",
                        lambda self, groups, **kw: read.append(list(groups)) or real(self, groups, **kw))
    uid = pl.read_parquet(out / RECS_FILE)["user_id"].unique(maintain_order=True)[9]   # third group
    assert read_matching(out / RECS_FILE, "user_id", [uid]).num_rows == 6
    assert read == [[2]]


def test_read_matching_names_a_missing_column(exported):
    _, _, out = exported
    with pytest.raises(ValueError, match=r"recommendations.parquet: no column 'user'"):
        read_matching(out / RECS_FILE, "user", ["x"])
    with pytest.raises(FileNotFoundError, match="nope.parquet: not found"):
        read_matching(out / "nope.parquet", "user_id", ["x"])


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
