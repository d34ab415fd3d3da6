"""On-the-fly teacher targets against a brute-force N×N reference."""

from __future__ import annotations

import pytest
import torch

from mmrec.io import write_json, write_parquet
from mmrec.teacher import IGNORE_CODE, PairTeacher, correlation, dissected, load_teacher
from mmrec.teacher.targets import codebook_table, denoised_table

N, DIM, D, K = 300, 32, 4, 12


def _table(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    table = torch.randn(N + 1, DIM, generator=g)
    has = torch.rand(N + 1, generator=g) > 0.1
    has[0] = False
    table[~has] = 0.0
    return table, has


def _brute_corr(f: torch.Tensor, kind: str) -> torch.Tensor:
    """[n, n] correlation matrix with plain matrix algebra (float64), independent of `correlation`."""
    f = f.double()
    if kind == "cosine":
        norm = f.norm(dim=1, keepdim=True)
        fn = torch.where(norm > 0, f / norm.clamp_min(1e-300), torch.zeros_like(f))
        return fn @ fn.T
    if kind == "dot":
        return f @ f.T
    return -torch.cdist(f, f, compute_mode="donot_use_mm_for_euclid_dist")


def _codebook(table: torch.Tensor, has: torch.Tensor, kind: str) -> torch.Tensor:
    # Centroids drawn from real dissected vectors so that every code is actually used.
    g = torch.Generator().manual_seed(1)
    idx = torch.nonzero(has).squeeze(1)
    i = idx[torch.randint(len(idx), (K,), generator=g)]
    j = idx[torch.randint(len(idx), (K,), generator=g)]
    return dissected(table[i], table[j], D, kind)


@pytest.mark.parametrize("kind", ["cosine", "dot", "euclidean"])
def test_pair_targets_equal_brute_force(kind: str) -> None:
    table, has = _table()
    book = _codebook(table, has, kind)
    teacher = PairTeacher(table, book, kind, D, has)

    r_ref = _brute_corr(table, kind)  # [N+1, N+1]
    parts = torch.stack([_brute_corr(p, kind) for p in table.chunk(D, dim=1)], dim=-1)  # [N+1, N+1, D]
    d2 = (parts[:, :, None, :] - book.double()[None, None]).pow(2).sum(-1)  # [N+1, N+1, K]
    top2 = d2.topk(2, dim=-1, largest=False)
    c_ref = top2.indices[..., 0]
    clear = (top2.values[..., 1] - top2.values[..., 0]) > 1e-6  # not a numerical tie

    ii, jj = torch.meshgrid(torch.arange(N + 1), torch.arange(N + 1), indexing="ij")
    r, c = teacher.pair_targets(ii, jj)
    valid = has[:, None] & has[None, :]

    assert r.dtype == torch.float32 and c.dtype == torch.long and r.shape == (N + 1, N + 1)
    torch.testing.assert_close(r[valid].double(), r_ref[valid], atol=1e-4, rtol=1e-4)
    assert clear[valid].float().mean() > 0.99
    assert torch.equal(c[valid & clear], c_ref[valid & clear])
    assert len(torch.unique(c[valid])) == K  # the comparison covers every code
    # pairs touching an item without a feature (or padding) carry no target
    assert torch.all(c[~valid] == IGNORE_CODE) and torch.all(r[~valid] == 0)
    assert torch.equal(teacher.pair_mask(ii, jj), valid)


def test_functions_shapes_and_gradients() -> None:
    a = torch.randn(5, 7, 16, requires_grad=True)
    b = torch.randn(5, 7, 16)
    b[0, 0] = 0.0
    for kind in ("cosine", "dot", "euclidean"):
        r, part = correlation(a, b, kind), dissected(a, b, 4, kind)
        assert r.shape == (5, 7) and part.shape == (5, 7, 4)
        (r.sum() + part.sum()).backward()
        assert torch.isfinite(a.grad).all()
        a.grad = None
    # identical vectors: euclidean is 0 with a finite gradient
    same = correlation(a, a.detach(), "euclidean")
    same.sum().backward()
    assert torch.all(same == 0) and torch.isfinite(a.grad).all()
    # cosine of a part equals the cosine of the corresponding slice
    torch.testing.assert_close(dissected(a, b, 4)[..., 2], correlation(a[..., 8:12], b[..., 8:12]))
    with pytest.raises(ValueError, match="divisible"):
        dissected(a, b, 3)
    with pytest.raises(KeyError, match="known: cosine, dot, euclidean"):
        correlation(a, b, "manhattan")


def test_load_teacher_roundtrip(tmp_path) -> None:
    table, has = _table(seed=3)
    book = _codebook(table, has, "cosine")
    write_parquet(denoised_table(table.numpy(), has.numpy()), tmp_path / "denoised.parquet")
    write_parquet(codebook_table(book.numpy()), tmp_path / "codebook.parquet")
    write_json({"params": {"correlation": "cosine", "subspaces": D}}, tmp_path / "teacher.json")

    t = load_teacher(tmp_path, "cpu")
    assert t.n_codes == K and t.denoised.shape == (N + 1, DIM)
    assert torch.equal(t.denoised, table) and torch.equal(t.has_feature, has)
    i, j = torch.randint(1, N + 1, (2, 64, 13))
    ref = PairTeacher(table, book, "cosine", D, has).pair_targets(i, j)
    got = t.pair_targets(i, j)
    assert torch.equal(got[0], ref[0]) and torch.equal(got[1], ref[1])

    (tmp_path / "codebook.parquet").unlink()
    with pytest.raises(FileNotFoundError, match="codebook.parquet"):
        load_teacher(tmp_path)


def test_bad_shapes_are_rejected() -> None:
    table, has = _table()
    with pytest.raises(ValueError, match="subspaces"):
        PairTeacher(table, torch.zeros(K, D + 1), "cosine", D, has)
    with pytest.raises(ValueError, match="rows"):
        PairTeacher(table, torch.zeros(K, D), "cosine", D, has[:-1])
