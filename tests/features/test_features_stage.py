"""The extract stage end to end: counts, files, metadata, missing/corrupt inputs, resumption."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch
from features_helpers import TEXTS, make_params

import mmrec.features.extract as ex
from mmrec.features.stage import run, summary_line
from mmrec.features.store import load_features
from mmrec.io import read_parquet_metadata
from mmrec.paths import feature_path, features_dir, modality_features_dir


def test_stage_extracts_both_modalities_with_counted_failures(project, reuse_encoders):
    params = make_params(num_workers=1, text={"tokens": 8})
    summary = run(params, project, progress=False)

    text, image = summary["modalities"]["text"], summary["modalities"]["image"]
    assert (text["items"], text["extracted"], text["missing"], text["failed"]) == (11, 9, 2, 0)
    assert (image["items"], image["extracted"], image["missing"], image["failed"]) == (11, 8, 1, 2)
    reasons = {e["item_idx"]: e["reason"] for e in image["failed_examples"]}
    assert set(reasons) == {3, 4} and "FileNotFoundError" in reasons[4]
    on_disk = json.loads((modality_features_dir(params, "image", project) / "summary.json").read_text())
    assert on_disk == {"modality": "image", "items": 11, "source": "data/t/ingest/items.parquet",
                       **{k: v for k, v in image.items() if k != "reused"}}
    line = summary_line(summary)
    assert "image: 8 extracted, 1 missing, 2 failed" in line and "text: 9 extracted" in line

    tf = load_features(feature_path(params, "text", project))
    assert tf.vector.shape == (12, 384) and tf.tokens.shape == (12, 8, 384)
    assert tf.has_feature.tolist() == [False] + [bool(t) for t in TEXTS]
    assert tf.vector[~tf.has_feature].abs().sum() == 0 and not tf.token_mask[~tf.has_feature].any()
    assert torch.allclose(tf.vector[tf.has_feature].norm(dim=1), torch.ones(9), atol=1e-4)

    imf = load_features(feature_path(params, "image", project))
    assert imf.vector.shape == (12, 1280) and imf.tokens.shape == (12, 50, 1280)
    expect = [False] + [i not in (3, 4, 5) for i in range(1, 12)]
    assert imf.has_feature.tolist() == expect
    assert imf.vector[~imf.has_feature].abs().sum() == 0 and imf.tokens[~imf.has_feature].abs().sum() == 0
    assert imf.vector[imf.has_feature].abs().sum(1).min() > 0

    meta = read_parquet_metadata(feature_path(params, "image", project))
    assert meta["encoder"] == "efficientnet-lite0" and meta["tokens_dtype"] == "float16"
    assert meta["dims"] == {"vector": 1280, "tokens": 50, "token_dim": 1280}
    assert "CenterCrop(224)" in meta["preprocessing"] and meta["pretrained"].startswith("imagenet")
    assert {"torch", "torchvision", "efficientnet-lite-pytorch"} <= set(meta["versions"])
    assert meta["counts"] == {"items": 11, "extracted": 8, "missing": 1, "failed": 2}
    assert not list(features_dir(params, project).glob("*.partial"))  # chunks cleaned up


def test_only_present_modalities_are_extracted(project, reuse_encoders):
    items_path = project / "data" / "t" / "ingest" / "items.parquet"
    pl.read_parquet(items_path).with_columns(pl.lit(None, dtype=pl.Utf8).alias("image_path")).write_parquet(items_path)
    params = make_params(text={"tokens": 8})
    summary = run(params, project, progress=False)
    assert summary["modalities"]["image"] == {"skipped": "no item has image"}
    assert not feature_path(params, "image", project).exists()
    f = load_features(feature_path(params, "text", project), tokens=False)
    assert f.tokens is None and f.vector.shape == (12, 384)


def test_bad_items_file_names_the_problem(project):
    items_path = project / "data" / "t" / "ingest" / "items.parquet"
    pl.read_parquet(items_path).filter(pl.col("item_idx") != 2).write_parquet(items_path)
    with pytest.raises(ValueError, match=r"items\.parquet: item_idx must be exactly 1\.\.\d+ in order"):
        run(make_params(), project, progress=False)


def _extract(minilm, out, **kw):
    sources = [t or None for t in TEXTS]
    return ex.extract_modality(sources, minilm, out, batch_size=2, chunk_size=3, num_workers=0,
                               progress=False, **kw)


def test_resume_after_a_crash_gives_the_same_file(minilm, tmp_path, monkeypatch):
    clean = tmp_path / "clean" / "features" / "text.parquet"
    _extract(minilm, clean)

    resumed = tmp_path / "resumed" / "features" / "text.parquet"
    real_write = ex.write_chunk
    calls = {"n": 0}

    def crash_after_two_chunks(*args, **kwargs):
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill")
        calls["n"] += 1
        return real_write(*args, **kwargs)

    monkeypatch.setattr(ex, "write_chunk", crash_after_two_chunks)
    with pytest.raises(KeyboardInterrupt):
        _extract(minilm, resumed)
    monkeypatch.setattr(ex, "write_chunk", real_write)
    cdir = ex.chunk_dir_for(resumed)
    assert sorted(p.name for p in cdir.glob("chunk-*.arrow")) == ["chunk-000000.arrow", "chunk-000001.arrow"]
    assert not resumed.exists()

    res = _extract(minilm, resumed)
    assert res["chunks_resumed"] == 2 and res["chunks"] == 4 and res["encoded_here"] == 5  # items 7..11
    assert resumed.read_bytes() == clean.read_bytes()
    assert not cdir.exists()


def test_max_chunks_stops_and_changed_settings_discard_old_chunks(minilm, tmp_path):
    out = tmp_path / "features" / "text.parquet"
    part = _extract(minilm, out, max_chunks=1)
    assert part["complete"] is False and not out.exists()
    manifest = json.loads((ex.chunk_dir_for(out) / "manifest.json").read_text())
    # a different batch size may change float results: those chunks must not be reused
    res = ex.extract_modality([t or None for t in TEXTS], minilm, out, batch_size=3, chunk_size=3,
                              num_workers=0, progress=False)
    assert res["chunks_resumed"] == 0 and res["complete"] and out.exists()
    assert manifest["fingerprint"] != ex.fingerprint(minilm, [t or None for t in TEXTS], 3, 3)


def test_batches_never_mix_chunks_so_vectors_match_a_plain_call(minilm, tmp_path):
    out = tmp_path / "features" / "text.parquet"
    _extract(minilm, out)
    f = load_features(out, tokens=False)
    present = [i for i, t in enumerate(TEXTS) if t]
    with torch.inference_mode():
        ref = minilm.encode(minilm.collate([TEXTS[i] for i in present])).vector
    assert torch.allclose(f.vector[np.array(present) + 1], ref, atol=1e-5)


@pytest.mark.parametrize("cpus", [2, 8])
def test_image_workers_fit_the_budget_and_do_not_change_the_file(project, effnet, tmp_path, monkeypatch, cpus):
    """Decoding in the main process (2 CPUs: no room beside the model) or in workers (8 CPUs)
    gives the same bytes, and workers + model threads never exceed the budget."""
    items = ex.read_items(project / "data" / "t" / "ingest" / "items.parquet")
    sources = ex.modality_sources(items, "image", project)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the encoder's float sums depend on it: fixed for both budgets
    try:
        ref = tmp_path / "ref" / "features" / "image.parquet"
        monkeypatch.setattr(ex, "budget", lambda: 1)
        ex.extract_modality(sources, effnet, ref, batch_size=2, chunk_size=3, num_workers=2, progress=False)
        monkeypatch.setattr(ex, "budget", lambda: cpus)
        out = tmp_path / str(cpus) / "features" / "image.parquet"
        res = ex.extract_modality(sources, effnet, out, batch_size=2, chunk_size=3, num_workers=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    pools = res["pools"]
    assert pools["loader_workers"] == (0 if cpus == 2 else 2)
    assert pools["loader_workers"] + pools["model_threads"] <= cpus
    assert out.read_bytes() == ref.read_bytes()
