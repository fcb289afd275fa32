"""Random projections against explicit matrices: Hadamard from scipy, Fastfood built by hand."""

from __future__ import annotations

import math

import pytest
import scipy.linalg
import torch

from losslands.subspace import (
    DenseProjection,
    FastfoodProjection,
    SparseProjection,
    fwht,
    make_projection,
)

F64 = torch.float64
KINDS = ("dense", "sparse", "fastfood")
# (D, d) pairs covering: D a multiple of the Fastfood block, a cut last block with fewer
# rows than d (norms from rows) and with at least d rows (norms from columns), d = D, d = 1.
SHAPES = [(200, 5), (203, 5), (205, 5), (100, 10), (77, 9), (37, 37), (6, 1)]


@pytest.mark.parametrize("n", [1, 2, 8, 64])
def test_fwht_matches_scipy_hadamard(n):
    x = torch.randn(3, 2, n, dtype=F64, generator=torch.Generator().manual_seed(n))
    H = torch.tensor(scipy.linalg.hadamard(n), dtype=F64)
    torch.testing.assert_close(fwht(x), x @ H.T, rtol=0, atol=1e-12)


def test_fwht_rejects_non_power_of_two():
    with pytest.raises(ValueError, match="zero-pad"):
        fwht(torch.zeros(12))


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("D,d", SHAPES)
def test_shapes_and_unit_columns(kind, D, d):
    P = make_projection(kind, D, d, seed=1, dtype=F64)
    assert (P.D, P.d) == (D, d)
    assert P(torch.ones(d, dtype=F64)).shape == (D,)
    assert P(torch.ones(d, 3, dtype=F64)).shape == (D, 3)
    assert P.transpose(torch.ones(D, dtype=F64)).shape == (d,)
    assert P.transpose(torch.ones(D, 2, dtype=F64)).shape == (d, 2)
    M = P.to_dense()
    torch.testing.assert_close(M.norm(dim=0), torch.ones(d, dtype=F64), rtol=0, atol=1e-12)
    assert torch.linalg.matrix_rank(M) == d


@pytest.mark.parametrize("kind", KINDS)
def test_unit_columns_float32(kind):
    P = make_projection(kind, 300, 20, seed=2)
    M = P.to_dense()
    assert M.dtype == torch.float32
    torch.testing.assert_close(M.norm(dim=0), torch.ones(20), rtol=0, atol=1e-5)


@pytest.mark.parametrize("kind", KINDS)
def test_transpose_and_autograd_match_the_matrix(kind):
    D, d = 150, 12
    P = make_projection(kind, D, d, seed=3, dtype=F64)
    M = P.to_dense()
    v = torch.randn(D, dtype=F64, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(P.transpose(v), M.T @ v, rtol=0, atol=1e-12)
    torch.testing.assert_close(P.transpose(torch.eye(D, dtype=F64)), M.T, rtol=0, atol=1e-12)
    z = torch.randn(d, dtype=F64, requires_grad=True)
    (P(z) @ v).backward()
    torch.testing.assert_close(z.grad, M.T @ v, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic_by_seed(kind):
    a = make_projection(kind, 120, 10, seed=5).to_dense()
    b = make_projection(kind, 120, 10, seed=5).to_dense()
    c = make_projection(kind, 120, 10, seed=6).to_dense()
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


@pytest.mark.parametrize("kind", KINDS)
def test_follows_the_input_dtype(kind):
    P = make_projection(kind, 64, 8, seed=0, dtype=F64)
    y = P(torch.ones(8, dtype=torch.float32))
    assert y.dtype == torch.float32
    torch.testing.assert_close(y.double(), P.to_dense().sum(1), rtol=1e-6, atol=1e-6)


def _explicit_fastfood(P: FastfoodProjection) -> torch.Tensor:
    """The Fastfood matrix built column by column from its definition, unnormalised."""
    n = P.n
    H = torch.tensor(scipy.linalg.hadamard(n), dtype=F64)
    blocks = []
    for b in range(P.blocks):
        Pi = torch.zeros(n, n, dtype=F64)
        Pi[torch.arange(n), P.perm[b]] = 1.0  # (Pi x)_k = x[perm[k]]
        B, G = torch.diag(P.signs[b].double()), torch.diag(P.gauss[b].double())
        blocks.append(H @ G @ Pi @ H @ B)
    V = torch.cat(blocks)[: P.D, : P.d]
    return torch.stack([V[:, j] for j in range(P.d)], dim=1)


@pytest.mark.parametrize("D,d", SHAPES)
def test_fastfood_equals_its_explicit_matrix(D, d):
    P = FastfoodProjection(D, d, seed=7, dtype=F64)
    V = _explicit_fastfood(P)
    norms = V.norm(dim=0)
    assert P.blocks == math.ceil(D / P.n) and P.n >= d
    torch.testing.assert_close(P.to_dense(), V / norms, rtol=0, atol=1e-12)
    torch.testing.assert_close(P.col_scale, 1 / norms, rtol=1e-12, atol=0)
    # O(D) memory: a handful of length-(blocks * n) vectors, never D x d.
    assert P.nbytes <= 4 * 8 * P.blocks * P.n + 8 * d


def test_fastfood_cut_block_makes_column_norms_differ():
    # Without the exact per-column correction columns of a cut block would not share one norm:
    # this makes the normalisation test above meaningful.
    P = FastfoodProjection(100, 10, seed=7, dtype=F64)
    norms = _explicit_fastfood(P).norm(dim=0)
    assert (norms.max() - norms.min()) / norms.mean() > 1e-3


def test_dense_memory_bound_raises_and_names_the_fix():
    D, d = 1000, 100
    with pytest.raises(ValueError, match="fastfood"):
        make_projection("dense", D, d, max_dense_bytes=D * d * 4 - 1)
    with pytest.raises(ValueError, match="max_dense_bytes"):
        DenseProjection(D, d, dtype=F64, max_dense_bytes=D * d * 4)
    P = make_projection("dense", D, d, max_dense_bytes=D * d * 4)
    assert P.nbytes == D * d * 4


def test_dense_default_bound_refuses_a_cnn_sized_matrix():
    # D = 183,242 (small_cnn) at d = 1000 needs 733 MB in float32, above the 256 MiB default.
    with pytest.raises(ValueError, match="sparse"):
        make_projection("dense", 183_242, 1000)


def test_sparse_structure():
    D, d = 2500, 40
    P = SparseProjection(D, d, seed=0, dtype=F64)
    assert P.matrix.layout == torch.sparse_csr and P.matrix_t.layout == torch.sparse_csr
    M = P.to_dense()
    nnz = (M != 0).sum(0)
    # Each column's non-zeros are +-1/sqrt(nnz) (normalised random signs).
    torch.testing.assert_close(M.abs().max(0).values, nnz.double().rsqrt(), rtol=1e-12, atol=0)
    torch.testing.assert_close(M.abs().sum(0), nnz.double().sqrt(), rtol=1e-12, atol=0)
    # Very sparse: density 1/sqrt(D) = 1/50, so about D * d / 50 = 2000 non-zeros.
    expected = D * d / math.sqrt(D)
    assert abs(P.nnz - expected) < 5 * math.sqrt(expected)
    assert P.nnz == int(nnz.sum())
    positives = (M > 0).sum().item()
    assert abs(positives - P.nnz / 2) < 5 * math.sqrt(P.nnz / 4)


def test_sparse_never_leaves_a_column_empty():
    for seed in range(20):
        M = SparseProjection(4, 4, seed=seed, density=0.1).to_dense()
        assert ((M != 0).sum(0) >= 1).all()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(kind="dense", D=10, d=11), "d <= D"),
        (dict(kind="dense", D=10, d=0), "positive"),
        (dict(kind="gaussian", D=10, d=2), "fastfood"),
    ],
)
def test_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        make_projection(kwargs.pop("kind"), **kwargs)


def test_wrong_input_shape():
    P = make_projection("fastfood", 20, 4)
    with pytest.raises(ValueError, match=r"\(4,\)"):
        P(torch.zeros(5))


@pytest.mark.parametrize(("rows", "chunk"), [(37, 8), (64, 64), (5, 1), (16, 4)])
def test_hadamard_row_chunks_are_the_hadamard_rows(rows, chunk):
    from losslands.subspace.projections import _hadamard_row_chunks

    n = 64
    H = torch.tensor(scipy.linalg.hadamard(n), dtype=F64)
    got = list(_hadamard_row_chunks(rows, chunk, n, F64))
    assert [start for start, _ in got] == list(range(0, rows, chunk))
    assert torch.equal(torch.cat([h for _, h in got]), H[:rows])
    with pytest.raises(ValueError, match="power of two"):
        next(_hadamard_row_chunks(rows, 6, n, F64))
