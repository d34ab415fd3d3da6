"""Re-extraction encodes exactly the items whose content changed (image bytes, text)."""

from __future__ import annotations

import numpy as np
import polars as pl
import pyarrow.parquet as pq
from features_helpers import make_params, scene

import mmrec.features.extract as ex
from mmrec.data.manifest import build_manifest, write_manifest
from mmrec.features.stage import run
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
