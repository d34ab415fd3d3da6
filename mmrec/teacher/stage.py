"""The teacher stage: per modality, denoising AE -> denoised table -> pair sample -> codebook."""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch

from mmrec.io import pick_device, read_parquet_metadata, write_json, write_parquet
from mmrec.paths import (
    feature_path,
    ingest_dir,
    modality_status,
    modality_teacher_dir,
    teacher_modality_dir,
)
from mmrec.teacher.autoencoder import encode_items, fit_autoencoder
from mmrec.teacher.codebook import (
    assign_codes,
    code_histogram,
    faiss_gpu_available,
    fit_codebook,
    pair_dissected,
)
from mmrec.teacher.pairs import (
    cooccurring_pairs,
    random_pairs,
    sequence_sets,
    training_sequences,
)
from mmrec.teacher.params import TeacherConfig, TeacherParams
from mmrec.teacher.targets import (
    CODEBOOK_FILE,
    DENOISED_FILE,
    TEACHER_JSON,
    codebook_table,
    denoised_table,
)

MODALITIES = ("text", "image")
#: In teacher/<modality>/ when the dataset has no item with that modality.
SKIPPED_FILE = "skipped.json"
# Distinct seed streams per modality, so text and image never share noise or pair samples.
_SEED_OFFSET = {"text": 0, "image": 1_000_003}


def load_feature_matrix(path: Path) -> tuple[torch.Tensor, torch.Tensor, str]:
    """Pooled vectors of a feature file as ([N+1, d] float32, has_feature [N+1] bool, encoder).

    Read batch by batch into one preallocated matrix (peak ~ the matrix, not twice it); token
    columns are never read. Row 0 (padding) and rows of missing items stay zero / False.
    """
    pf = pq.ParquetFile(path)
    names = set(pf.schema_arrow.names)
    missing = {"item_idx", "vector", "has_feature"} - names
    if missing:
        raise ValueError(f"{path}: missing column(s) {sorted(missing)}")
    vtype = pf.schema_arrow.field("vector").type
    dim = getattr(vtype, "list_size", None)
    if not dim or dim < 0:
        raise ValueError(f"{path}: column `vector` must be a fixed-size list of float, got {vtype}")
    idx_col = pq.read_table(path, columns=["item_idx"]).column("item_idx").to_numpy()
    if len(idx_col) == 0:
        raise ValueError(f"{path}: no rows")
    if idx_col.min() < 0:
        raise ValueError(f"{path}: negative item_idx {int(idx_col.min())}")
    x = np.zeros((int(idx_col.max()) + 1, dim), dtype=np.float32)
    has = np.zeros(len(x), dtype=bool)
    for rb in pf.iter_batches(batch_size=16384, columns=["item_idx", "vector", "has_feature"]):
        idx = rb.column(0).to_numpy().astype(np.int64)
        vec = rb.column(1)
        if vec.null_count:
            bad = idx[vec.is_null().to_numpy(zero_copy_only=False)]
            raise ValueError(f"{path}: {len(bad)} null `vector` rows (item_idx {bad[:5].tolist()} ...)")
        block = vec.flatten().to_numpy(zero_copy_only=False).reshape(-1, dim)
        flag = rb.column(2).fill_null(False).to_numpy(zero_copy_only=False)
        finite = np.isfinite(block).all(1) | ~flag
        if not finite.all():
            raise ValueError(f"{path}: non-finite values in `vector` of item_idx {idx[~finite][:5].tolist()}")
        x[idx] = block
        has[idx] = flag
    has[0] = False
    x[~has] = 0.0  # a vector on a has_feature=False row is not trusted
    meta = read_parquet_metadata(path)
    enc = meta.get("encoder", "")
    return torch.from_numpy(x), torch.from_numpy(has), enc if isinstance(enc, str) else str(enc)


def build_modality(x: torch.Tensor, has: torch.Tensor, seqs: pl.DataFrame, tp: TeacherParams,
                   seed: int, device: torch.device, progress: bool = True,
                   desc: str = "teacher") -> dict[str, Any]:
    """The stage's core for one modality, in memory: AE, denoised table, pair sample, codebook.

    x [N+1, d_in] float32 CPU, has [N+1] bool, seqs from `training_sequences`.
    Returns denoised [N+1, dim] ndarray, has_feature, codebook [K, D] ndarray, the JSON record
    and wall-clock seconds per phase.
    """
    timings: dict[str, float] = {}
    t = time.perf_counter()
    has_np = has.numpy()
    sets = sequence_sets(seqs, has_np)
    train_items = np.unique(sets.items)                                 # featured training items
    ae = fit_autoencoder(x, train_items, dim=tp.dim, noise_std=tp.noise_std,
                         feature_dropout=tp.feature_dropout, epochs=tp.epochs, patience=tp.patience,
                         batch_size=tp.batch_size, lr=tp.lr, holdout=tp.holdout, seed=seed,
                         device=device, progress=progress, desc=f"{desc} AE")
    denoised = encode_items(ae, x, has, device)                          # [N+1, dim]
    timings["autoencoder"], t = time.perf_counter() - t, time.perf_counter()

    ci, cj, co_total = cooccurring_pairs(sets, tp.max_cooccurring_pairs, seed + 11)
    ri, rj = random_pairs(train_items, tp.random_pairs, seed + 12)
    n_co, n_rand, n_seq = len(ci), len(ri), len(sets.offsets) - 1
    # int32 ids: the pair lists are the largest arrays of this phase
    pi = np.concatenate([ci, ri]).astype(np.int32)                       # [P]
    pj = np.concatenate([cj, rj]).astype(np.int32)
    del ci, cj, ri, rj, sets
    table = torch.from_numpy(denoised).to(device)
    sample = pair_dissected(table, pi, pj, tp.subspaces, tp.correlation, progress=progress)  # [P, D]
    del pi, pj
    timings["pairs"], t = time.perf_counter() - t, time.perf_counter()
    use_gpu = device.type == "cuda" and faiss_gpu_available()
    codebook = fit_codebook(sample, tp.codes, tp.kmeans_iters, seed + 13, use_gpu=use_gpu)
    codes = assign_codes(sample, codebook, device, progress=progress)
    del sample, table
    timings["codebook"] = time.perf_counter() - t

    record = {
        "autoencoder": {**ae.record(), "input_dim": int(x.shape[1])},
        "items": {"n_items": int(x.shape[0] - 1), "with_feature": int(has_np.sum()),
                  "without_feature": int((~has_np[1:]).sum()), "training_items": int(len(train_items)),
                  "cold_items_encoded": int(has_np.sum() - len(train_items))},
        "pairs": {"cooccurring_available": co_total, "cooccurring_sampled": int(n_co),
                  "random": int(n_rand), "training_sequences": int(n_seq)},
        "codes": {"all": code_histogram(codes, tp.codes),
                  "cooccurring": code_histogram(codes[:n_co], tp.codes),
                  "random": code_histogram(codes[n_co:], tp.codes)},
        "centroids": codebook.tolist(),
        "kmeans_device": "gpu" if use_gpu else "cpu",
    }
    # timings stay out of `record` so that teacher.json only changes when the results do
    return {"denoised": denoised, "has_feature": has_np, "codebook": codebook, "record": record,
            "seconds": timings}


def run(params: TeacherConfig, root: Path = Path("."), modalities: Sequence[str] = MODALITIES) -> dict[str, Any]:
    """Teacher stage entry point (used by stages/teacher.py, the CLI and tests).

    For each of `modalities` (one per DVC stage `teacher@<modality>`; default both) that its
    extraction left present (mmrec.paths.modality_status), writes denoised.parquet, codebook.parquet and teacher.json under
    teacher_modality_dir. A modality the dataset lacks (its extraction found no item with it,
    e.g. Amazon data without pictures) gets a `skipped.json` in its teacher folder, so the
    stage's output exists and the DAG goes on; a modality whose extraction did not run or
    failed is an error.
    """
    t0 = time.time()
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"unknown modality {unknown}; known: {', '.join(MODALITIES)}")
    tp = params.teacher
    if tp.dim % tp.subspaces:
        raise ValueError(f"teacher.dim={tp.dim} must be divisible by teacher.subspaces={tp.subspaces}")
    device = pick_device(params.device)
    splits_path = ingest_dir(params, root) / "splits.parquet"
    if not splits_path.exists():
        raise FileNotFoundError(f"{splits_path}: missing (run the ingest stage first)")
    seqs = training_sequences(pl.scan_parquet(splits_path), splits_path)
    status = {m: modality_status(params, m, root) for m in modalities}
    missing = [m for m, s in status.items() if s == "missing"]
    if missing:
        expected = ", ".join(str(feature_path(params, m, root)) for m in missing)
        raise FileNotFoundError(f"no feature file {expected} and no record that the dataset lacks "
                                f"{' and '.join(missing)}; run extract (`dvc repro extract@{missing[0]}`)")

    summary: dict[str, Any] = {"modalities": {}, "device": str(device)}
    for m in modalities:
        if status[m] == "absent":
            # The dataset has no item with this modality: an explicit, complete output, so the
            # DAG goes on (models then run on the modalities that exist).
            note = {"modality": m, "skipped": f"the dataset has no {m} (extract@{m} found none)"}
            write_json(note, modality_teacher_dir(params, m, root) / SKIPPED_FILE)
            summary["modalities"][m] = note
            continue
        summary["modalities"][m] = build_and_write(params, m, seqs, device, root)
    summary["seconds"] = round(time.time() - t0, 1)
    return summary


def build_and_write(params: TeacherConfig, m: str, seqs: pl.DataFrame, device: torch.device,
                    root: Path) -> dict[str, Any]:
    """One modality's teacher, written to teacher_modality_dir; returns its summary entry."""
    tp = params.teacher
    fpath = feature_path(params, m, root)
    x, has, enc = load_feature_matrix(fpath)
    try:
        out = build_modality(x, has, seqs, tp, params.seed + _SEED_OFFSET[m], device, desc=m)
    except ValueError as err:
        raise ValueError(f"{fpath}: {err}") from err
    del x
    odir = teacher_modality_dir(params, m, root)
    meta = {"modality": m, "encoder": enc or getattr(params.extract, m).encoder,
            "correlation": tp.correlation, "subspaces": tp.subspaces, "dim": tp.dim}
    write_parquet(denoised_table(out["denoised"], out["has_feature"]), odir / DENOISED_FILE, meta)
    write_parquet(codebook_table(out["codebook"]), odir / CODEBOOK_FILE, meta)
    rec = out["record"]
    # teacher.json last: its presence means the folder is complete.
    write_json({**meta, "feature_file": str(fpath.relative_to(root)) if fpath.is_relative_to(root)
                else str(fpath), "seed": params.seed + _SEED_OFFSET[m],
                "params": tp.model_dump(), **rec}, odir / TEACHER_JSON)
    if rec["codes"]["all"]["dead_codes"]:
        warnings.warn(f"teacher {m}: {len(rec['codes']['all']['dead_codes'])} codebook codes got "
                      f"no sampled pair (see {odir / TEACHER_JSON})", stacklevel=2)
    return {
        "dir": str(odir), "items": rec["items"]["n_items"],
        "best_epoch": rec["autoencoder"]["best_epoch"],
        "best_valid_loss": rec["autoencoder"]["best_valid_loss"],
        "pairs": rec["pairs"]["cooccurring_sampled"] + rec["pairs"]["random"],
        "dead_codes": len(rec["codes"]["all"]["dead_codes"]),
    }
