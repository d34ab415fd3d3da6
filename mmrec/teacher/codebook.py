"""Codebook of dissected correlations: FAISS k-means on a seeded sample of item pairs."""

from __future__ import annotations

import math

import numpy as np
import torch
from tqdm.auto import tqdm

from mmrec.teacher.targets import dissected, nearest_code
from mmrec.threads import size_faiss


@torch.no_grad()
def pair_dissected(table: torch.Tensor, i: np.ndarray, j: np.ndarray, subspaces: int, kind: str,
                   batch: int = 1 << 14, progress: bool = False) -> np.ndarray:
    """[P, D] float32 dissected correlations of pairs (i, j) of rows of `table` [N+1, dim]."""
    out = np.empty((len(i), subspaces), dtype=np.float32)
    dev = table.device
    steps = range(0, len(i), batch)
    for s in tqdm(steps, desc="pair correlations", disable=not progress or len(steps) < 20, leave=False):
        a = table[torch.from_numpy(i[s:s + batch]).to(dev, torch.long)]  # [b, dim]
        b = table[torch.from_numpy(j[s:s + batch]).to(dev, torch.long)]
        out[s:s + batch] = dissected(a, b, subspaces, kind).float().cpu().numpy()
    return out


def faiss_gpu_available() -> bool:
    """True when this faiss build has GPU indexes and sees a GPU (faiss-gpu + CUDA)."""
    import faiss

    return hasattr(faiss, "get_num_gpus") and faiss.get_num_gpus() > 0


def fit_codebook(x: np.ndarray, k: int, iters: int, seed: int, use_gpu: bool = False) -> np.ndarray:
    """Seeded FAISS k-means on x [P, D]; centroids [K, D] sorted by their mean correlation
    (code 0 = least correlated pairs), so codes read the same way across runs and modalities.

    Every point is used (faiss would otherwise subsample to 256 points per centroid).
    """
    import faiss

    size_faiss(faiss)  # FAISS's OpenMP pool otherwise takes every core of the machine
    if len(x) < k:
        raise ValueError(f"codebook: {len(x)} sampled pairs for teacher.codes={k} centroids; "
                         f"raise teacher.random_pairs or lower teacher.codes")
    x = np.ascontiguousarray(x, dtype=np.float32)
    km = faiss.Kmeans(x.shape[1], k, niter=iters, seed=seed, gpu=use_gpu, verbose=False,
                      max_points_per_centroid=math.ceil(len(x) / k) + 1, min_points_per_centroid=1)
    km.train(x)
    cent = np.asarray(km.centroids, dtype=np.float32).reshape(k, x.shape[1])
    order = np.lexsort(cent.T[::-1])          # tie-break on the columns, left to right
    order = order[np.argsort(cent[order].mean(1), kind="stable")]
    return np.ascontiguousarray(cent[order])


def assign_codes(x: np.ndarray, codebook: np.ndarray, device: torch.device | str = "cpu",
                 progress: bool = False) -> np.ndarray:
    """Nearest code of each row of x [P, D] with the SAME routine PairTeacher uses."""
    book = torch.from_numpy(codebook).to(device)
    out = np.empty(len(x), dtype=np.int64)
    step = 1 << 18
    steps = range(0, len(x), step)
    for s in tqdm(steps, desc="pair codes", disable=not progress or len(steps) < 2, leave=False):
        out[s:s + step] = nearest_code(torch.from_numpy(x[s:s + step]).to(device), book).cpu().numpy()
    return out


def code_histogram(codes: np.ndarray, k: int, dominant_factor: float = 5.0) -> dict:
    """Counts per code, with dead codes (no pair) and dominant ones (> dominant_factor / K share)."""
    counts = np.bincount(codes, minlength=k)
    total = max(int(counts.sum()), 1)
    share = counts / total
    return {
        "counts": counts.tolist(),
        "dead_codes": np.flatnonzero(counts == 0).tolist(),
        "dominant_codes": np.flatnonzero(share > dominant_factor / k).tolist(),
        "dominant_threshold_share": dominant_factor / k,
        "max_share": float(share.max()) if len(share) else 0.0,
        "entropy_bits": float(-(share[share > 0] * np.log2(share[share > 0])).sum()),
    }
