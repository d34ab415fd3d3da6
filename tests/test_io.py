"""Atomic writes: whole files or none, with the mode a plain open() gives (DVC restores 0644)."""

from __future__ import annotations

import os
import stat

import polars as pl
import pytest

from mmrec.io import (
    FILE_MODE,
    ROW_GROUP_ROWS,
    atomic_path,
    write_json,
    write_parquet,
    write_parquet_groups,
)


def test_written_files_get_the_umask_mode_not_mkstemps_0600(tmp_path):
    mask = os.umask(0o022)
    os.umask(mask)
    assert FILE_MODE == 0o666 & ~mask
    for path in (write_json({"a": 1}, tmp_path / "a.json"),
                 write_parquet(pl.DataFrame({"x": [1]}), tmp_path / "sub" / "x.parquet")):
        assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = write_json({"good": True}, tmp_path / "r.json")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text().strip().startswith("{") and "good" in target.read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


@pytest.mark.parametrize("n", [0, 5, ROW_GROUP_ROWS + 1234])
def test_writing_by_row_groups_gives_the_bytes_of_the_whole_table(tmp_path, n):
    df = pl.DataFrame({"k": pl.int_range(n, eager=True, dtype=pl.Int32)}).with_columns(
        s=pl.format("user{}", pl.col("k") % 5000), t=pl.col("k").cast(pl.Int64) * 7)
    meta = {"source": "x"}
    whole = write_parquet(df, tmp_path / "whole.parquet", meta)
    parts = write_parquet_groups(n, lambda at, k: df.slice(at, k), tmp_path / "parts.parquet", meta)
    assert parts.read_bytes() == whole.read_bytes()
