"""Two CPU processes (gloo) shard the items by chunk and produce the same files as one process."""

from __future__ import annotations

import socket

import polars as pl
import pytest
import torch.multiprocessing as mp
from features_helpers import make_params

from mmrec.features.stage import run
from mmrec.paths import feature_path, features_dir

PARAMS = dict(chunk_size=2, batch_size=2, num_workers=0, image={"tokens": True})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str) -> None:
    import os

    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    summary = run(make_params(**PARAMS), root, progress=False)
    assert summary["complete"]


@pytest.mark.slow  # two fresh interpreters import torch and load the encoder
def test_two_processes_match_one(project, tmp_path, reuse_encoders):
    items_path = project / "data" / "t" / "ingest" / "items.parquet"
    # images only: the sharding logic is modality-agnostic, and one encoder keeps this quick
    pl.read_parquet(items_path).with_columns(pl.lit(None, dtype=pl.Utf8).alias("text")).write_parquet(items_path)
    params = make_params(**PARAMS)
    single = run(params, project, progress=False)
    ref_file = feature_path(params, "image", project).read_bytes()
    ref_summary = (features_dir(params, project) / "summary.json").read_text()
    assert single["modalities"]["image"]["chunks"] == 6

    feature_path(params, "image", project).unlink()
    (features_dir(params, project) / "summary.json").unlink()
    mp.spawn(_worker, args=(2, _free_port(), str(project)), nprocs=2, join=True)

    assert feature_path(params, "image", project).read_bytes() == ref_file
    assert (features_dir(params, project) / "summary.json").read_text() == ref_summary
    assert not (project / "data" / "t" / "features.partial").exists()
