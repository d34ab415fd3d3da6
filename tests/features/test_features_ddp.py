"""Two CPU processes (gloo) shard the items by chunk and produce the same files as one process."""

from __future__ import annotations

import shutil
import socket

import polars as pl
import pytest
import torch
import torch.multiprocessing as mp
from features_helpers import make_params

from mmrec.features.stage import run
from mmrec.paths import extract_cache_path, feature_path, features_dir, modality_features_dir

PARAMS = dict(chunk_size=2, batch_size=2, num_workers=0, image={"tokens": True})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, root: str) -> None:
    import os

    import torch

    torch.set_num_threads(1)  # two ranks on a shared CPU: do not oversubscribe it
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    summary = run(make_params(**PARAMS), root, progress=False)
    assert summary["complete"]


@pytest.mark.slow  # two fresh interpreters import torch and load the encoder
def test_two_processes_match_one(project):
    items_path = project / "data" / "t" / "ingest" / "items.parquet"
    # images only: the sharding logic is modality-agnostic, and one encoder keeps this quick
    # items 1..7 (one corrupt, one missing file, one without image) in 4 chunks: ranks get 2 each
    (pl.read_parquet(items_path).filter(pl.col("item_idx") <= 7)
     .with_columns(pl.lit(None, dtype=pl.Utf8).alias("text")).write_parquet(items_path))
    params = make_params(**PARAMS)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as in the workers: CPU kernels' float sums depend on the thread count
    try:
        single = run(params, project, progress=False)
    finally:
        torch.set_num_threads(threads)
    ref_file = feature_path(params, "image", project).read_bytes()
    summary_path = modality_features_dir(params, "image", project) / "summary.json"
    ref_summary = summary_path.read_text()
    assert single["modalities"]["image"]["chunks"] == 4

    feature_path(params, "image", project).unlink()
    summary_path.unlink()
    shutil.rmtree(extract_cache_path(params, "image", project).parent)  # encode again, do not reuse
    mp.spawn(_worker, args=(2, _free_port(), str(project)), nprocs=2, join=True)

    assert feature_path(params, "image", project).read_bytes() == ref_file
    assert summary_path.read_text() == ref_summary
    assert not list(features_dir(params, project).glob("*.partial"))
