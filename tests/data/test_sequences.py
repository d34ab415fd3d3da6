import sys
from pathlib import Path

import polars as pl
import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "train"))

import train_synth as ts  # noqa: E402

from mmrec.data.sequences import load_eval_split, load_train_sequences, pad_left  # noqa: E402


def test_pad_left_keeps_the_most_recent_items():
    s = pl.Series([[1, 2, 3, 4], [7], [], None], dtype=pl.List(pl.Int32))
    assert pad_left(s, 3).tolist() == [[2, 3, 4], [0, 0, 7], [0, 0, 0], [0, 0, 0]]


def test_train_sequences_are_history_plus_target(tmp_path):
    ingest = ts.write_dataset(tmp_path, n_users=3, n_items=10, length=6)
    seq, users = load_train_sequences(ingest, max_len=3)
    walks = ts.sequences(3, 10, 6)
    assert users.tolist() == [1, 2, 3]
    # the train row holds items 0..3 of each walk (history 0..2 + target 3): the last 4 kept
    assert seq.tolist() == walks[:, :4].tolist()
    seq, _ = load_train_sequences(ingest, max_len=6)
    assert seq[0].tolist() == [0, 0, 0] + walks[0, :4].tolist()


def test_eval_split_windows_and_full_history(tmp_path):
    ingest = ts.write_dataset(tmp_path, n_users=2, n_items=10, length=7)
    walks = ts.sequences(2, 10, 7)
    ev = load_eval_split(ingest, "test", max_len=4)
    assert len(ev) == 2
    assert ev.targets.tolist() == walks[:, -1].tolist()
    assert ev.histories.tolist() == walks[:, 2:6].tolist()
    assert ev.full_history.tolist() == walks[:, :6].tolist()
    assert ev.histories.dtype == torch.long


def test_bad_splits_are_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="splits.parquet"):
        load_eval_split(tmp_path, "valid", 4)
    pl.DataFrame({"user_idx": [1], "split": ["valid"], "target": [3]}).write_parquet(tmp_path / "splits.parquet")
    with pytest.raises(ValueError, match="splits.parquet: missing column.*history"):
        load_eval_split(tmp_path, "valid", 4)
    pl.DataFrame({"user_idx": [1], "split": ["valid"], "history": [[1]], "target": [0]}).write_parquet(
        tmp_path / "splits.parquet")
    with pytest.raises(ValueError, match="non-positive targets"):
        load_eval_split(tmp_path, "valid", 4)
    with pytest.raises(ValueError, match="no rows with split == 'test'"):
        load_eval_split(tmp_path, "test", 4)


def test_trim_padding_drops_only_the_columns_every_row_pads():
    import torch

    from mmrec.data.sequences import trim_padding

    seq = torch.tensor([[0, 0, 0, 4, 5, 6], [0, 0, 2, 3, 0, 0], [0, 0, 0, 0, 7, 8]])
    out = trim_padding(seq)
    assert out.tolist() == [[0, 4, 5, 6], [2, 3, 0, 0], [0, 0, 7, 8]]
    assert trim_padding(torch.zeros(2, 5, dtype=torch.long)).shape == (2, 2)   # never below 2
    assert trim_padding(torch.tensor([[0, 0, 0, 0, 9]])).tolist() == [[0, 9]]
