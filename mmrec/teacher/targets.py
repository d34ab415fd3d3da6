"""Holistic and dissected correlations, and the on-the-fly KDSR pair teacher.

The reference KDSR code precomputes two N×N matrices per modality (float64 correlations and
int64 codes: 32·N² bytes on the GPU). Here the teacher keeps only the N×dim denoised table and
the K×D codebook; `PairTeacher.pair_targets` computes the correlation and the code of exactly the
pairs a batch asks for. The same pure functions (`correlation`, `dissected`) serve the student
side of the KDSR loss, so teacher and student correlations can never drift apart.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch

from mmrec.registry import Registry

DENOISED_FILE = "denoised.parquet"
CODEBOOK_FILE = "codebook.parquet"
TEACHER_JSON = "teacher.json"

#: code returned for pairs where either item has no feature (or is padding); it is the default
#: `ignore_index` of `torch.nn.functional.cross_entropy`, so such pairs drop out of the CKD loss.
IGNORE_CODE = -100

_EPS = 1e-8

CORRELATIONS: Registry[Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = Registry("correlation")


@CORRELATIONS.register("cosine")
def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Normalise each side separately so a zero vector gives 0 (not NaN) and a finite gradient.
    an = a / a.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    bn = b / b.norm(dim=-1, keepdim=True).clamp_min(_EPS)
    return (an * bn).sum(-1)


@CORRELATIONS.register("dot")
def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a * b).sum(-1)


@CORRELATIONS.register("euclidean")
def _neg_euclidean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Negated so that, as for cosine and dot, larger means more alike. sqrt has an infinite
    # gradient at 0 (identical vectors): the where() keeps the gradient finite there.
    sq = (a - b).pow(2).sum(-1)
    pos = sq > 0
    return -torch.where(pos, sq.clamp_min(1e-30).sqrt(), torch.zeros_like(sq))


def correlation(a: torch.Tensor, b: torch.Tensor, kind: str = "cosine") -> torch.Tensor:
    """Holistic correlation of two vector batches along the last dim: [*, d] x [*, d] -> [*].

    kind: `cosine` (zero vectors give 0), `dot`, or `euclidean` (the NEGATIVE L2 distance, so
    larger always means more similar). Differentiable; broadcasting follows torch rules.
    """
    return CORRELATIONS.get(kind)(a, b)


def dissected(a: torch.Tensor, b: torch.Tensor, subspaces: int, kind: str = "cosine") -> torch.Tensor:
    """Dissected correlation: split the last dim into `subspaces` (D) contiguous equal parts and
    correlate part by part: [*, d] x [*, d] -> [*, D]. d must be divisible by D."""
    d = a.shape[-1]
    if d % subspaces:
        raise ValueError(f"vector dim {d} is not divisible by teacher.subspaces={subspaces}")
    a = a.reshape(*a.shape[:-1], subspaces, d // subspaces)  # [*, D, d/D]
    b = b.reshape(*b.shape[:-1], subspaces, d // subspaces)
    return correlation(a, b, kind)


def nearest_code(x: torch.Tensor, codebook: torch.Tensor, chunk: int = 1 << 15) -> torch.Tensor:
    """Index of the nearest centroid (squared L2) for each row: [M, D] x [K, D] -> [M] long.

    Exact differences rather than the |x|²-2x·c+|c|² expansion (which cancels catastrophically
    near ties), accumulated one subspace at a time so temporaries stay [chunk, K], not
    [chunk, K, D]. Ties go to the lower code.
    """
    out = torch.empty(x.shape[0], dtype=torch.long, device=x.device)
    for s in range(0, x.shape[0], chunk):
        xs = x[s:s + chunk]                                       # [m, D]
        d2 = torch.zeros(xs.shape[0], codebook.shape[0], dtype=x.dtype, device=x.device)  # [m, K]
        for d in range(x.shape[1]):
            d2.add_((xs[:, d, None] - codebook[None, :, d]).square_())
        out[s:s + chunk] = d2.argmin(dim=1)
    return out


class PairTeacher:
    """KDSR teacher of one modality: holistic correlation r_ij and dissected-correlation code c_ij
    of any item pairs, computed on the fly from the denoised table and the codebook.

    denoised:    [N+1, dim] float32 (row 0 = padding)
    codebook:    [K, D] float32 centroids of dissected-correlation vectors
    has_feature: [N+1] bool or None (None = every row valid). Pairs touching a row without a
                 feature get r = 0 and c = IGNORE_CODE (-100); `pair_mask` tells them apart.
    """

    def __init__(self, denoised: torch.Tensor, codebook: torch.Tensor, correlation: str,
                 subspaces: int, has_feature: Optional[torch.Tensor] = None) -> None:
        if denoised.ndim != 2 or codebook.ndim != 2:
            raise ValueError(f"denoised must be [N+1, dim] and codebook [K, D]; got "
                             f"{tuple(denoised.shape)} and {tuple(codebook.shape)}")
        if codebook.shape[1] != subspaces:
            raise ValueError(f"codebook has {codebook.shape[1]} columns but subspaces={subspaces}")
        if denoised.shape[1] % subspaces:
            raise ValueError(f"denoised dim {denoised.shape[1]} not divisible by subspaces={subspaces}")
        CORRELATIONS.get(correlation)  # fail early on an unknown name, listing the known ones
        self.denoised = denoised.float()
        self.codebook = codebook.float()
        self.correlation = correlation
        self.subspaces = int(subspaces)
        self.has_feature = None if has_feature is None else has_feature.bool()
        if self.has_feature is not None and self.has_feature.shape[0] != denoised.shape[0]:
            raise ValueError(f"has_feature has {self.has_feature.shape[0]} rows, denoised "
                             f"{denoised.shape[0]}")

    @property
    def n_codes(self) -> int:
        return int(self.codebook.shape[0])

    @property
    def dim(self) -> int:
        return int(self.denoised.shape[1])

    def pair_mask(self, i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        """[*S] bool: True where both items have a feature (teacher targets are meaningful)."""
        if self.has_feature is None:
            return torch.ones(torch.broadcast_shapes(i.shape, j.shape), dtype=torch.bool,
                              device=self.denoised.device)
        return self.has_feature[i] & self.has_feature[j]

    @torch.no_grad()
    def pair_targets(self, i: torch.Tensor, j: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(r [*S] float32, c [*S] long) for item index tensors i, j of one (broadcastable) shape.

        c = IGNORE_CODE where either item lacks a feature (and r = 0 there).
        """
        i, j = torch.broadcast_tensors(i.to(self.denoised.device).long(), j.to(self.denoised.device).long())
        shape = i.shape
        # fp32 whatever autocast the training loop runs under: codes must match the codebook's fit.
        with torch.autocast(device_type=self.denoised.device.type, enabled=False):
            a = self.denoised[i.reshape(-1)]  # [M, dim]
            b = self.denoised[j.reshape(-1)]
            r = correlation(a, b, self.correlation)  # [M]
            c = nearest_code(dissected(a, b, self.subspaces, self.correlation), self.codebook)  # [M]
        valid = self.pair_mask(i, j).reshape(-1)
        r = torch.where(valid, r, torch.zeros_like(r))
        c = torch.where(valid, c, torch.full_like(c, IGNORE_CODE))
        return r.reshape(shape), c.reshape(shape)

    def to(self, device: torch.device | str) -> "PairTeacher":
        return PairTeacher(self.denoised.to(device), self.codebook.to(device), self.correlation,
                           self.subspaces, None if self.has_feature is None else self.has_feature.to(device))


def denoised_table(vectors: np.ndarray, has_feature: np.ndarray) -> pa.Table:
    """Arrow table of denoised.parquet for items 1..N: vectors [N+1, dim], has_feature [N+1]."""
    n, dim = vectors.shape
    flat = pa.array(np.ascontiguousarray(vectors[1:], dtype=np.float32).reshape(-1))
    return pa.table({
        "item_idx": pa.array(np.arange(1, n, dtype=np.int32)),
        "vector": pa.FixedSizeListArray.from_arrays(flat, dim),
        "has_feature": pa.array(np.asarray(has_feature[1:], dtype=bool)),
    })


def codebook_table(codebook: np.ndarray) -> pa.Table:
    """Arrow table of codebook.parquet: `code` int32 0..K-1, `centroid` fixed-size list float32 [D]."""
    k, d = codebook.shape
    flat = pa.array(np.ascontiguousarray(codebook, dtype=np.float32).reshape(-1))
    return pa.table({"code": pa.array(np.arange(k, dtype=np.int32)),
                     "centroid": pa.FixedSizeListArray.from_arrays(flat, d)})


def read_denoised(path: Path) -> tuple[torch.Tensor, torch.Tensor]:
    """denoised.parquet -> (table [N+1, dim] float32, has_feature [N+1] bool), row 0 = padding."""
    t = pq.read_table(path, columns=["item_idx", "vector", "has_feature"])
    idx = t.column("item_idx").to_numpy().astype(np.int64)
    if idx.size and idx.min() < 0:
        raise ValueError(f"{path}: negative item_idx {int(idx.min())}")
    vec = t.column("vector").combine_chunks()
    dim = vec.type.list_size
    flat = vec.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    n_rows = int(idx.max()) + 1 if idx.size else 1
    table = np.zeros((n_rows, dim), dtype=np.float32)
    table[idx] = flat.reshape(-1, dim)
    has = np.zeros(n_rows, dtype=bool)
    has[idx] = t.column("has_feature").to_numpy(zero_copy_only=False)
    has[0] = False  # padding never carries a feature
    return torch.from_numpy(table), torch.from_numpy(has)


def read_codebook(path: Path) -> torch.Tensor:
    """codebook.parquet -> [K, D] float32 ordered by `code` (which must be 0..K-1)."""
    t = pq.read_table(path, columns=["code", "centroid"])
    code = t.column("code").to_numpy().astype(np.int64)
    if sorted(code.tolist()) != list(range(len(code))):
        raise ValueError(f"{path}: column `code` must hold 0..K-1 exactly once each")
    cent = t.column("centroid").combine_chunks()
    flat = cent.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    book = np.empty((len(code), cent.type.list_size), dtype=np.float32)
    book[code] = flat.reshape(len(code), -1)
    return torch.from_numpy(book)


def load_teacher(dir: Path | str, device: torch.device | str = "cpu") -> PairTeacher:
    """Read one modality's teacher folder (denoised.parquet, codebook.parquet, teacher.json)."""
    dir = Path(dir)
    for name in (DENOISED_FILE, CODEBOOK_FILE, TEACHER_JSON):
        if not (dir / name).exists():
            raise FileNotFoundError(f"{dir / name}: missing (run the teacher stage)")
    meta = json.loads((dir / TEACHER_JSON).read_text())
    try:
        kind, subspaces = meta["params"]["correlation"], int(meta["params"]["subspaces"])
    except KeyError as err:
        raise ValueError(f"{dir / TEACHER_JSON}: missing params.{err.args[0]}") from None
    table, has = read_denoised(dir / DENOISED_FILE)
    book = read_codebook(dir / CODEBOOK_FILE)
    return PairTeacher(table, book, kind, subspaces, has).to(device)
