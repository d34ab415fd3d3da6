"""The teacher stage end to end on a tiny synthetic dataset."""

from __future__ import annotations

import json

import numpy as np
import polars as pl
import pytest
import torch

from mmrec.paths import feature_path, modality_teacher_dir, teacher_modality_dir
from mmrec.teacher import IGNORE_CODE, load_teacher
from mmrec.teacher.codebook import code_histogram, fit_codebook
from mmrec.teacher.stage import load_feature_matrix, run
from teacher_synth import COLD, MISSING_TEXT, N_ITEMS, build_dataset, synth_params


@pytest.fixture(scope="module")
def stage_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher_stage")
    p = synth_params()
    build_dataset(root, p)
    return root, p, run(p, root)


def test_stage_writes_all_outputs(stage_run) -> None:
    root, p, summary = stage_run
    assert set(summary["modalities"]) == {"text", "image"}
    for m in ("text", "image"):
        d = teacher_modality_dir(p, m, root)
        den = pl.read_parquet(d / "denoised.parquet")
        book = pl.read_parquet(d / "codebook.parquet")
        rec = json.loads((d / "teacher.json").read_text())
        assert den.columns == ["item_idx", "vector", "has_feature"]
        assert den["item_idx"].to_list() == list(range(1, N_ITEMS + 1))
        assert den.schema["vector"] == pl.Array(pl.Float32, p.teacher.dim)
        assert book["code"].to_list() == list(range(p.teacher.codes))
        assert book.schema["centroid"] == pl.Array(pl.Float32, p.teacher.subspaces)

        ae = rec["autoencoder"]
        assert len(ae["train_loss"]) == len(ae["valid_loss"]) == ae["epochs_run"] >= ae["best_epoch"] >= 1
        assert ae["best_valid_loss"] < ae["mean_baseline_valid_loss"]
        pairs = rec["pairs"]
        assert pairs["random"] == p.teacher.random_pairs
        assert pairs["cooccurring_sampled"] == min(pairs["cooccurring_available"], p.teacher.max_cooccurring_pairs)
        hist = rec["codes"]["all"]
        assert sum(hist["counts"]) == pairs["random"] + pairs["cooccurring_sampled"]
        assert len(rec["centroids"]) == p.teacher.codes
        assert rec["params"]["correlation"] == "cosine" and rec["items"]["training_items"] <= N_ITEMS - COLD
        means = np.asarray(rec["centroids"]).mean(1)
        assert np.all(np.diff(means) >= 0)  # codes ordered by mean correlation


def test_featureless_items_are_zero_flagged_and_ignored(stage_run) -> None:
    root, p, _ = stage_run
    d = teacher_modality_dir(p, "text", root)
    den = pl.read_parquet(d / "denoised.parquet")
    missing = den.filter(~pl.col("has_feature"))
    assert sorted(missing["item_idx"].to_list()) == sorted(MISSING_TEXT)
    assert np.all(np.stack(missing["vector"].to_numpy()) == 0)
    # cold items (never in a training sequence) are encoded all the same
    cold = den.filter(pl.col("item_idx") > N_ITEMS - COLD, pl.col("has_feature"))
    assert len(cold) > 0 and np.all(np.abs(np.stack(cold["vector"].to_numpy())).sum(1) > 0)

    t = load_teacher(d, "cpu")
    assert t.denoised.shape == (N_ITEMS + 1, p.teacher.dim) and t.n_codes == p.teacher.codes
    i = torch.tensor([MISSING_TEXT[0], 1, 0, 5])
    j = torch.tensor([2, MISSING_TEXT[1], 7, 6])
    r, c = t.pair_targets(i, j)
    assert c[:3].tolist() == [IGNORE_CODE] * 3 and r[:3].tolist() == [0.0] * 3
    assert 0 <= int(c[3]) < p.teacher.codes and -1 <= float(r[3]) <= 1


def test_seeded_runs_are_byte_identical(stage_run, tmp_path) -> None:
    root, p, _ = stage_run
    build_dataset(tmp_path, p)
    run(p, tmp_path)
    for m in ("text", "image"):
        for f in ("denoised.parquet", "codebook.parquet"):
            a = (teacher_modality_dir(p, m, root) / f).read_bytes()
            b = (teacher_modality_dir(p, m, tmp_path) / f).read_bytes()
            assert a == b, f"{m}/{f} differs between two seeded runs"


def test_stage_only_processes_present_modalities(tmp_path) -> None:
    p = synth_params(epochs=3)
    build_dataset(tmp_path, p, image=False)
    s = run(p, tmp_path)
    assert "items" in s["modalities"]["text"] and "skipped" in s["modalities"]["image"]
    assert not teacher_modality_dir(p, "image", tmp_path).exists()
    # teacher@image of a dataset without pictures: its DVC output exists and says why it is empty
    note = json.loads((modality_teacher_dir(p, "image", tmp_path) / "skipped.json").read_text())
    assert note["modality"] == "image" and "the dataset has no image" in note["skipped"]
    feature_path(p, "text", tmp_path).unlink()
    with pytest.raises(FileNotFoundError, match="no feature file"):
        run(p, tmp_path, ["text"])


def test_a_modality_whose_extraction_did_not_run_is_an_error(tmp_path) -> None:
    """Only extract's explicit record makes a modality absent; a missing file alone (extraction
    not run or failed) must not let the teacher, or a model, go on without it."""
    p = synth_params(epochs=3)
    build_dataset(tmp_path, p, image=False)
    (feature_path(p, "image", tmp_path).parent / "summary.json").unlink()
    with pytest.raises(FileNotFoundError, match="run extract"):
        run(p, tmp_path, ["image"])


def test_different_seed_changes_codebook_and_bad_counts_fail() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 4)).astype(np.float32)
    a, b = fit_codebook(x, 8, 10, seed=1), fit_codebook(x, 8, 10, seed=1)
    assert np.array_equal(a, b) and not np.array_equal(a, fit_codebook(x, 8, 10, seed=2))
    with pytest.raises(ValueError, match="teacher.codes"):
        fit_codebook(x[:5], 8, 10, seed=1)
    h = code_histogram(np.array([0, 0, 0, 0, 1, 2]), 4, dominant_factor=2.0)
    assert h["counts"] == [4, 1, 1, 0] and h["dead_codes"] == [3] and h["dominant_codes"] == [0]


def test_bad_inputs_name_the_file(tmp_path) -> None:
    p = synth_params(epochs=2)
    with pytest.raises(FileNotFoundError, match="splits.parquet"):
        run(p, tmp_path)
    build_dataset(tmp_path, p, image=False)
    fpath = feature_path(p, "text", tmp_path)
    pl.read_parquet(fpath).drop("has_feature").write_parquet(fpath)
    with pytest.raises(ValueError, match=r"text-.*\.parquet: missing column\(s\) \['has_feature'\]"):
        load_feature_matrix(fpath)


def test_load_feature_matrix_places_rows_by_item_idx(tmp_path) -> None:
    p = synth_params()
    build_dataset(tmp_path, p, image=False)
    fpath = feature_path(p, "text", tmp_path)
    df = pl.read_parquet(fpath)
    df.reverse().write_parquet(fpath)  # row order must not matter
    x, has, enc = load_feature_matrix(fpath)
    assert x.shape == (N_ITEMS + 1, df.schema["vector"].size) and not has[0] and torch.all(x[0] == 0)
    assert torch.equal(x[5], torch.tensor(df.filter(pl.col("item_idx") == 5)["vector"][0].to_numpy()))
    assert sorted(torch.nonzero(~has[1:]).squeeze(1).add(1).tolist()) == sorted(MISSING_TEXT)


def test_non_finite_feature_is_an_error(tmp_path) -> None:
    p = synth_params()
    build_dataset(tmp_path, p, image=False)
    fpath = feature_path(p, "text", tmp_path)
    df = pl.read_parquet(fpath)
    vec = np.stack(df["vector"].to_numpy())
    vec[6, 2] = np.nan  # item 7
    df.with_columns(pl.Series("vector", vec, dtype=df.schema["vector"])).write_parquet(fpath)
    with pytest.raises(ValueError, match=r"non-finite values .* item_idx \[7\]"):
        load_feature_matrix(fpath)
