"""Re-extraction encodes exactly the items whose content changed (image bytes, text)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from features_helpers import make_params, scene

import mmrec.features.extract as ex
from mmrec.data.manifest import build_manifest, write_manifest
from mmrec.features.stage import run, summary_line
from mmrec.features.store import load_features
from mmrec.paths import extract_cache_path, feature_path, image_manifest_path


def _encoded_rows(monkeypatch) -> list[list[int]]:
    """Spy on the extraction loop: the item rows each run actually sends to the encoder."""
    seen: list[list[int]] = []
    real = ex._encode_chunk

    def spy(k, batches, *args, **kwargs):
        seen.append(sorted(r for b in batches for r in b))
        return real(k, batches, *args, **kwargs)

    monkeypatch.setattr(ex, "_encode_chunk", spy)
    return seen


def test_replacing_one_picture_reencodes_exactly_that_item(project, reuse_encoders, monkeypatch):
    params = make_params(num_workers=0)
    items = pl.read_parquet(project / "data/t/ingest/items.parquet")
    write_manifest(items, image_manifest_path(params, project), project)
    first = run(params, project, modalities=["image"], progress=False)["modalities"]["image"]
    assert first["reused"] == 0 and first["extracted"] == 8
    before = load_features(feature_path(params, "image", project))
    before_bytes = feature_path(params, "image", project).read_bytes()

    # same name, new bytes: the manifest's hash changes, and item 6 is encoded again (items 3 and
    # 4, a corrupt and a missing file, are retried: failures are never cached)
    scene(99).save(project / "data/raw/t/images/6.jpg", quality=90)
    write_manifest(items, image_manifest_path(params, project), project)
    feature_path(params, "image", project).unlink()  # as DVC does before running a stage
    seen = _encoded_rows(monkeypatch)
    second = run(params, project, modalities=["image"], progress=False)["modalities"]["image"]
    assert sorted(r + 1 for rows in seen for r in rows) == [3, 4, 6]  # rows are item_idx - 1
    assert second["reused"] == 7
    assert {k: second[k] for k in ("extracted", "missing", "failed")} == {"extracted": 8, "missing": 1, "failed": 2}
    after = load_features(feature_path(params, "image", project))
    changed = (before.vector != after.vector).any(1).nonzero().flatten().tolist()
    assert changed == [6]
    assert np.array_equal(before.has_feature.numpy(), after.has_feature.numpy())
    assert not (before.tokens[6] == after.tokens[6]).all()

    # nothing changed: every good vector comes from the cache, and the file is byte-identical
    second_bytes = feature_path(params, "image", project).read_bytes()
    feature_path(params, "image", project).unlink()
    seen.clear()
    third = run(params, project, modalities=["image"], progress=False)["modalities"]["image"]
    assert third["reused"] == 8 and sorted(r + 1 for rows in seen for r in rows) == [3, 4]
    assert feature_path(params, "image", project).read_bytes() == second_bytes
    assert before_bytes != second_bytes


def test_text_edit_reencodes_that_text_and_other_encoder_starts_fresh(project, reuse_encoders, monkeypatch):
    params = make_params(text={"tokens": 8})
    run(params, project, modalities=["text"], progress=False)
    path = project / "data/t/ingest/items.parquet"
    pl.read_parquet(path).with_columns(
        pl.when(pl.col("item_idx") == 2).then(pl.lit("Blue linen shirt")).otherwise(pl.col("text")).alias("text")
    ).write_parquet(path)
    seen = _encoded_rows(monkeypatch)
    res = run(params, project, modalities=["text"], progress=False)["modalities"]["text"]
    assert [r for rows in seen for r in rows] == [1] and res["reused"] == 8 and res["extracted"] == 9

    # the cache belongs to one encoder setting: fewer tokens is another encoder, nothing reused
    seen.clear()
    other = make_params(text={"tokens": 4})
    res = run(other, project, modalities=["text"], progress=False)["modalities"]["text"]
    assert res["reused"] == 0 and len([r for rows in seen for r in rows]) == 9
    assert extract_cache_path(params, "text", project) == extract_cache_path(other, "text", project)


def test_manifest_rows_hashes_and_unreadable_files(project):
    items = pl.read_parquet(project / "data/t/ingest/items.parquet")
    m = build_manifest(items, project)
    assert m["item_idx"].to_list() == list(range(1, 12))
    assert m.filter(pl.col("item_idx") == 5)["path"].to_list() == [None]          # no picture
    missing = m.filter(pl.col("item_idx") == 4)                                     # listed, absent
    assert missing["path"].to_list() == ["data/raw/t/images/does-not-exist.jpg"]
    assert missing["sha256"].to_list() == [None] and missing["size"].to_list() == [None]
    ok = m.filter(pl.col("item_idx") == 6)
    assert ok["size"].item() == (project / "data/raw/t/images/6.jpg").stat().st_size
    assert len(ok["sha256"].item()) == 64
    scene(99).save(project / "data/raw/t/images/6.jpg", quality=90)
    changed = build_manifest(items, project).join(m, on="item_idx", suffix="_old").filter(
        pl.col("sha256") != pl.col("sha256_old"))
    assert changed["item_idx"].to_list() == [6]
    out = write_manifest(items, project / "m.parquet", project)
    assert pq.read_schema(out).names == ["item_idx", "path", "size", "sha256"]


# --------------------------------------------------------------------------------------------
# A cache that verifies what it trusts (issue 24)
# --------------------------------------------------------------------------------------------

def _text_run(project, params) -> dict:
    return run(params, project, modalities=["text"], progress=False)["modalities"]["text"]


def _prepend_item(project) -> None:
    """A changed item set: a new item 1, every other item moves down one row."""
    path = project / "data/t/ingest/items.parquet"
    items = pl.read_parquet(path).sort("item_idx")
    new = items.head(1).with_columns(item_id=pl.lit("NEW"), text=pl.lit("A brand new teapot"),
                                     image_path=pl.lit(None, pl.String), has_image=pl.lit(False))
    both = pl.concat([new, items])
    both.with_columns(pl.int_range(1, both.height + 1, dtype=pl.Int32).alias("item_idx")).write_parquet(path)


def test_the_cache_is_a_copy_so_damaging_the_output_leaves_it_intact(project, reuse_encoders):
    params = make_params(text={"tokens": 8})
    _text_run(project, params)
    out, cache = feature_path(params, "text", project), extract_cache_path(params, "text", project)
    good = out.read_bytes()
    assert not os.path.samefile(out, cache)
    with open(out, "r+b") as f:  # damaged in place (a hard link would carry this into the cache)
        f.seek(len(good) // 2)
        f.write(b"\0" * 64)
    res = _text_run(project, params)
    assert res["reused"] == 9 and "cache_discarded" not in res
    assert out.read_bytes() == good


class _Crash(BaseException):
    """A process dying between two writes (not an Exception: nothing may catch it)."""


def test_a_crash_between_the_feature_and_keys_writes_never_shifts_vectors(project, reuse_encoders, monkeypatch):
    import mmrec.features.reuse as reuse

    params = make_params(text={"tokens": 8})
    _text_run(project, params)
    _prepend_item(project)

    def crash(*args, **kwargs):
        raise _Crash()

    monkeypatch.setattr(reuse, "write_parquet", crash)  # the keys write
    with pytest.raises(_Crash):
        _text_run(project, params)
    monkeypatch.undo()
    res = _text_run(project, params)
    got = load_features(feature_path(params, "text", project))
    shutil.rmtree(project / "data/t/cache")  # the reference: everything encoded afresh
    fresh = _text_run(project, params)
    want = load_features(feature_path(params, "text", project))
    assert fresh["reused"] == 0 and torch.equal(got.vector, want.vector) and torch.equal(got.tokens, want.tokens)
    assert res["reused"] == 0 and "cache_discarded" in res


def test_keys_written_for_another_copy_are_refused(project, reuse_encoders):
    """The keys file records the sha256 and size of the features it describes: old keys beside
    new features (whatever left them so) are never paired."""
    params = make_params(text={"tokens": 8})
    _text_run(project, params)
    cache = extract_cache_path(params, "text", project)
    old_keys = cache.with_name(cache.stem + ".keys.parquet").read_bytes()
    _prepend_item(project)
    _text_run(project, params)
    want = load_features(feature_path(params, "text", project)).vector
    cache.with_name(cache.stem + ".keys.parquet").write_bytes(old_keys)
    summary = run(params, project, modalities=["text"], progress=False)
    res = summary["modalities"]["text"]
    assert res["reused"] == 0 and "not the file its keys were written for" in res["cache_discarded"]
    assert "cache discarded" in summary_line(summary)
    # (reused and fresh vectors of one text differ by float noise: batches are padded differently)
    assert torch.allclose(load_features(feature_path(params, "text", project)).vector, want, atol=1e-5)
    summary_json = json.loads((project / "data/t/features/text/summary.json").read_text())
    assert "cache_discarded" not in summary_json  # the output does not depend on the cache's fate
    assert _text_run(project, params)["reused"] == 10  # rebuilt: the next run reuses again


@pytest.mark.parametrize("damage", ["garbage features", "truncated features", "garbage keys",
                                    "no keys", "no features", "keys out of range", "keys without a hash"])
def test_a_damaged_cache_is_discarded_and_the_items_encoded_again(project, reuse_encoders, damage):
    params = make_params(text={"tokens": 8})
    _text_run(project, params)
    out, cache = feature_path(params, "text", project), extract_cache_path(params, "text", project)
    good = out.read_bytes()
    keys = cache.with_name(cache.stem + ".keys.parquet")
    if damage == "garbage features":
        cache.write_bytes(b"PAR1" + b"x" * 100)
    elif damage == "truncated features":
        cache.write_bytes(cache.read_bytes()[: cache.stat().st_size // 2])
    elif damage == "garbage keys":
        keys.write_bytes(b"not parquet")
    elif damage == "no keys":
        keys.unlink()
    elif damage == "no features":
        cache.unlink()
    elif damage == "keys without a hash":  # as the cache of an older mmrec (a hard link) left them
        table = pq.read_table(keys)
        meta = {k: v for k, v in table.schema.metadata.items() if not k.startswith(b"features_")}
        pq.write_table(table.replace_schema_metadata(meta), keys)
    else:  # well-formed keys that point past the cached rows, with a matching hash recorded
        meta = pq.read_schema(keys).metadata
        table = pq.read_table(keys)
        table = table.set_column(1, "row", pa.array([r + 100 for r in table["row"].to_pylist()], pa.int64()))
        pq.write_table(table.replace_schema_metadata(meta), keys)
    res = _text_run(project, params)
    assert res["reused"] == 0 and res["cache_discarded"]
    assert out.read_bytes() == good
    assert _text_run(project, params)["reused"] == 9  # and the next run trusts the new cache


def test_a_failed_reextraction_leaves_no_outputs(project, reuse_encoders, monkeypatch):
    """Reused vectors that cannot be spliced in leave zeros in their rows: that file, and the
    previous run's summary.json beside it, must not survive for training to read."""
    import mmrec.features.reuse as reuse

    params = make_params(text={"tokens": 8})
    _text_run(project, params)
    out = feature_path(params, "text", project)
    good = out.read_bytes()

    def broken(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(reuse, "_splice", broken)
    with pytest.raises(Exception, match="disk full"):
        _text_run(project, params)
    assert not out.exists() and not (out.parent / "summary.json").exists()
    monkeypatch.undo()
    res = _text_run(project, params)
    assert res["reused"] == 0 and out.read_bytes() == good
