import hashlib
import shutil
from pathlib import Path

import polars as pl
import pytest

from mmrec.config import parse_params
from mmrec.data.stage import run, summary_line
from mmrec.paths import ingest_dir

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "data"
OUTPUTS = ("items.parquet", "interactions.parquet", "splits.parquet", "report.json")


def _params(raw_dir, source="amazon2018", **data):
    return parse_params({"data": {"name": "t", "source": source, "raw_dir": str(raw_dir),
                                  "min_user_interactions": 3, **data}})


def test_amazon_end_to_end_contracts(tmp_path):
    raw = tmp_path / "data" / "raw" / "toys"
    shutil.copytree(FIX / "amazon2018", raw)
    p = _params("data/raw/toys")  # relative raw_dir: image paths relative to the root
    res = run(p, root=tmp_path)
    out = ingest_dir(p, tmp_path)
    assert all((out / f).exists() for f in OUTPUTS)
    items = pl.read_parquet(out / "items.parquet")
    inter = pl.read_parquet(out / "interactions.parquet")
    splits = pl.read_parquet(out / "splits.parquet")
    assert items.columns[:7] == ["item_idx", "item_id", "text", "image_path", "n_train",
                                 "has_text", "has_image"]
    assert items.schema["item_idx"] == pl.Int32 and items.schema["n_train"] == pl.Int32
    assert items["item_idx"].to_list() == list(range(1, items.height + 1))
    # require [text, image]: I7 (no image) and I8 (no text) are gone, counted
    assert not {"I7", "I8"} & set(items["item_id"]) and items["has_image"].all()
    steps = {f["step"]: f["rows_dropped"] for f in res["filters"]}
    assert steps["item_lacks_required_modality"] == 2 and steps["item_not_in_meta"] == 1
    assert steps["duplicate_user_item_timestamp"] == 1
    for path in items["image_path"]:
        assert path.startswith("data/raw/toys/images/") and (tmp_path / path).is_file()
    assert inter.schema == {"user_idx": pl.Int32, "user_id": pl.String, "item_idx": pl.Int32,
                            "timestamp": pl.Int64}
    assert inter.select(["user_idx", "timestamp"]).equals(inter.select(["user_idx", "timestamp"]).sort(
        ["user_idx", "timestamp"], maintain_order=True))
    # popularity counts training interactions only
    train = splits.filter(pl.col("split") == "train")
    counts = (train.select(pl.concat_list("history", pl.col("target").implode().over("user_idx")
                                          .list.last()).alias("s"))
              .explode("s")["s"].value_counts())
    n_train = dict(zip(items["item_idx"], items["n_train"]))
    assert {k: v for k, v in counts.iter_rows()} == {k: v for k, v in n_train.items() if v}
    # report: files, filters and the Table 1 statistics
    assert res["rows_read"] == res["rows_parsed"] + res["rows_failed"]
    st = res["stats"]
    assert st["users"] == inter["user_idx"].n_unique() and st["interactions"] == inter.height
    assert st["density"] == round(inter.height / (st["users"] * st["items"]), 6)
    assert summary_line(res).startswith("ingest t (amazon2018)")


def test_two_runs_are_byte_identical(tmp_path):
    digests = []
    for k in range(2):
        p = _params(FIX / "hm", source="hm", require=["text"])
        run(p, root=tmp_path / str(k))
        out = ingest_dir(p, tmp_path / str(k))
        digests.append([hashlib.sha256((out / f).read_bytes()).hexdigest() for f in OUTPUTS])
    assert digests[0] == digests[1]


def test_hm_global_time_split_through_the_stage(tmp_path):
    p = _params(FIX / "hm", source="hm", split="global_time", require=[],
                time_split={"valid_start": "2020-01-05", "test_start": "2020-02-01"})
    res = run(p, root=tmp_path)
    splits = pl.read_parquet(ingest_dir(p, tmp_path) / "splits.parquet")
    inter = pl.read_parquet(ingest_dir(p, tmp_path) / "interactions.parquet")
    evals = splits.filter(pl.col("split") != "train")
    n_train_rows = inter.filter(pl.col("timestamp") < 1578182400).height
    assert evals.height == inter.height - n_train_rows  # one row per valid/test interaction
    assert res["split"]["valid_start"] == 1578182400
    assert evals.filter(pl.col("split") == "test")["cold_user"].all()  # c3 shops only in February
    assert splits.filter(pl.col("split") == "valid")["cold_user"].sum() >= 1


def test_amazon2023_timestamps_are_seconds(tmp_path):
    p = _params(FIX / "amazon2023", source="amazon2023", require=[])
    run(p, root=tmp_path)
    inter = pl.read_parquet(ingest_dir(p, tmp_path) / "interactions.parquet")
    assert inter["timestamp"].min() == 1_500_000_000


def test_nothing_usable_is_a_clear_error(tmp_path):
    (tmp_path / "meta_X.json").write_text('{"title": "no asin"}\n{broken\n')
    (tmp_path / "X.json").write_text('{"reviewerID": "u", "asin": "a", "unixReviewTime": 1500000000}\n')
    with pytest.raises(ValueError, match="no usable item metadata"):
        run(_params(tmp_path), root=tmp_path)
    (tmp_path / "meta_X.json").write_text('{"asin": "b", "title": "t"}\n')
    with pytest.raises(ValueError, match="no usable interactions"):
        run(_params(tmp_path, require=[]), root=tmp_path)


def test_report_of_a_literal_meta_file_repeats_byte_for_byte(tmp_path):
    # amazon2014's meta has a call expression: ast's error names the node with its address
    reports = []
    for k in range(2):
        p = _params(FIX / "amazon2014", source="amazon2014", allow_truncated=True, require=[],
                    min_user_interactions=1, split="global_time")
        run(p, root=tmp_path / str(k))
        reports.append((ingest_dir(p, tmp_path / str(k)) / "report.json").read_text())
    assert reports[0] == reports[1] and "0x" not in reports[0]


def test_summary_line_names_every_filter_that_removed_rows(tmp_path):
    """max_history (and every other filter) shows in the one-line summary with its count, not
    only in report.json: a silent 59% cut on MovieLens was the symptom."""
    raw = tmp_path / "data" / "raw" / "toys"
    shutil.copytree(FIX / "amazon2018", raw)
    res = run(_params("data/raw/toys", max_history=3), root=tmp_path)
    dropped: dict[str, int] = {}
    for f in res["filters"]:
        dropped[f["step"]] = dropped.get(f["step"], 0) + f["rows_dropped"]
    assert dropped["max_history"] > 0  # the fixture has users with more than 3 interactions
    line = summary_line(res)
    for step, n in dropped.items():
        assert (f"{step} -{n:,}" in line) == (n > 0), (step, n, line)
    # in the order they ran, before the interaction count
    shown = [s for s in dropped if dropped[s]]
    assert [line.index(f"{s} -") for s in shown] == sorted(line.index(f"{s} -") for s in shown)
    assert line.index("max_history") < line.index(" interactions")
