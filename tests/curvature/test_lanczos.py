"""Lanczos against explicit matrices ``Q diag(lambda) Q^T`` with known spectra."""

from __future__ import annotations

import warnings

import pytest
import torch

from losslands.curvature import DenseOperator, lanczos


def _bulk(n: int, low: float, high: float, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return low + (high - low) * torch.rand(n, generator=g, dtype=torch.float64)


def _check_pairs(res, a, values, vectors, residuals, q, eig, value_tol):
    """Values match, vectors match the true eigenvectors, residuals are the true ones."""
    for value, vec, resid in zip(values, vectors, residuals, strict=True):
        j = int(torch.argmin((eig - value).abs()))
        assert abs(float(value) - float(eig[j])) < value_tol
        assert abs(float(vec @ q[:, j])) > 1 - 1e-6
        assert float(resid) == pytest.approx(
            float((a @ vec - value * vec).norm()), rel=1e-6, abs=1e-12
        )


def test_positive_definite_extremes(spectral_matrix):
    eig = torch.cat([torch.tensor([20.0, 15.0, 12.0, 0.1, 0.2, 0.3]), _bulk(294, 1.0, 5.0)])
    a, q = spectral_matrix(eig, seed=3)
    op = DenseOperator(a)
    res = lanczos(op, k=3, tol=1e-8)
    assert res.converged
    assert torch.allclose(res.top, torch.tensor([20.0, 15.0, 12.0], dtype=torch.float64), atol=1e-9)
    assert torch.allclose(res.bottom, torch.tensor([0.1, 0.2, 0.3], dtype=torch.float64), atol=1e-9)
    _check_pairs(res, a, res.top, res.top_vectors, res.top_residuals, q, eig, 1e-9)
    _check_pairs(res, a, res.bottom, res.bottom_vectors, res.bottom_residuals, q, eig, 1e-9)
    assert res.iterations < 300  # converged well before the basis spans the space
    assert res.matvecs == res.iterations + 6 == op.n_matvecs
    assert max(res.top_residuals.max(), res.bottom_residuals.max()) <= 1e-8 * 20 * 1.01


def test_indefinite_with_dominant_negative_end(spectral_matrix):
    # |-50| is the largest magnitude: power iteration would report -50 as "the top eigenvalue".
    eig = torch.cat([torch.tensor([-50.0, -3.0, -2.5, 10.0, 8.0, 7.0]), _bulk(194, -2.0, 6.0)])
    a, q = spectral_matrix(eig, seed=4)
    res = lanczos(DenseOperator(a), k=3)
    assert res.converged
    assert torch.allclose(res.top, torch.tensor([10.0, 8.0, 7.0], dtype=torch.float64), atol=1e-8)
    assert torch.allclose(
        res.bottom, torch.tensor([-50.0, -3.0, -2.5], dtype=torch.float64), atol=1e-8
    )
    _check_pairs(res, a, res.top, res.top_vectors, res.top_residuals, q, eig, 1e-8)
    _check_pairs(res, a, res.bottom, res.bottom_vectors, res.bottom_residuals, q, eig, 1e-8)


def test_clustered_top_is_resolved(spectral_matrix):
    eig = torch.cat([torch.tensor([10.0, 9.999, 9.998]), _bulk(397, 0.0, 5.0)])
    a, q = spectral_matrix(eig, seed=5)
    res = lanczos(DenseOperator(a), k=3, tol=1e-7)
    assert res.converged and res.iterations < 400
    assert torch.allclose(
        res.top, torch.tensor([10.0, 9.999, 9.998], dtype=torch.float64), atol=1e-8
    )
    # three distinct eigenvectors, each matching its own eigenvalue's
    for i in range(3):
        assert abs(float(res.top_vectors[i] @ q[:, i])) > 0.999
    bottom = torch.sort(eig).values[:3]
    assert torch.allclose(res.bottom, bottom, atol=1e-6)


def test_tiny_dim_terminates_exactly(spectral_matrix):
    eig = torch.tensor([-1.0, 0.5, 2.0, 3.0, 7.0, 11.0])
    a, q = spectral_matrix(eig, seed=6)
    res = lanczos(DenseOperator(a), k=3, max_iters=200)
    assert res.converged and res.iterations <= 6
    assert torch.allclose(res.top, torch.tensor([11.0, 7.0, 3.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(
        res.bottom, torch.tensor([-1.0, 0.5, 2.0], dtype=torch.float64), atol=1e-12
    )
    assert res.top_residuals.max() < 1e-12 and res.bottom_residuals.max() < 1e-12


def test_invariant_subspace_restarts_find_repeated_eigenvalues(spectral_matrix):
    # Each Krylov space from one vector is 2-D (two distinct eigenvalues): beta vanishes after
    # 2 steps and only restarts can reveal the multiplicities.
    eig = torch.tensor([5.0] * 3 + [1.0] * 27)
    a, _ = spectral_matrix(eig, seed=7)
    res = lanczos(DenseOperator(a), k=3)
    assert res.converged and res.iterations == 6
    assert torch.allclose(res.top, torch.full((3,), 5.0, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(res.bottom, torch.full((3,), 1.0, dtype=torch.float64), atol=1e-12)
    gram = res.top_vectors @ res.top_vectors.T  # the three copies are orthonormal
    assert torch.allclose(gram, torch.eye(3, dtype=torch.float64), atol=1e-10)


def test_zero_operator():
    res = lanczos(DenseOperator(torch.zeros(10, 10, dtype=torch.float64)), k=2)
    assert res.converged
    assert torch.equal(res.top, torch.zeros(2, dtype=torch.float64))


def test_max_iters_warns_and_reports(spectral_matrix):
    eig = torch.linspace(0.0, 1.0, 500, dtype=torch.float64)
    a, _ = spectral_matrix(eig, seed=8)
    with pytest.warns(RuntimeWarning, match="raise max_iters"):
        res = lanczos(DenseOperator(a), k=3, max_iters=10)
    assert not res.converged and res.iterations == 10
    assert max(res.top_residuals.max(), res.bottom_residuals.max()) > 1e-6
    assert res.top[0] <= 1.0 + 1e-12  # Ritz values stay inside the spectrum


def test_float32_operator(spectral_matrix):
    eig = torch.cat([torch.tensor([9.0, 8.0, 7.0, -4.0, -3.0, -2.0]), _bulk(94, -1.0, 1.0)])
    a, _ = spectral_matrix(eig, seed=9, dtype=torch.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # must converge without warning in float32 too
        res = lanczos(DenseOperator(a), k=3, tol=1e-5)
    assert res.top_vectors.dtype == torch.float32 and res.top_vectors.shape == (3, 100)
    assert torch.allclose(res.top, torch.tensor([9.0, 8.0, 7.0], dtype=torch.float64), atol=1e-4)
    assert torch.allclose(
        res.bottom, torch.tensor([-4.0, -3.0, -2.0], dtype=torch.float64), atol=1e-4
    )


def test_progress_and_determinism(spectral_matrix):
    a, _ = spectral_matrix(torch.cat([torch.tensor([30.0, -20.0]), _bulk(98, -1.0, 1.0)]), seed=10)
    calls = []
    res = lanczos(DenseOperator(a), k=1, progress=lambda it, r: calls.append((it, r)))
    assert [c[0] for c in calls] == list(range(1, res.iterations + 1))
    assert calls[-1][1] <= 1e-6 < calls[0][1]
    again = lanczos(DenseOperator(a), k=1)
    assert torch.equal(res.top, again.top) and torch.equal(res.top_vectors, again.top_vectors)
    other = lanczos(DenseOperator(a), k=1, seed=1, true_residuals=False)
    assert other.matvecs == other.iterations
    assert float(other.top[0]) == pytest.approx(30.0, abs=1e-8)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"k": 0}, "positive integer"),
        ({"k": 1.5}, "positive integer"),
        ({"k": 6}, "k <= 5"),
        ({"k": 3, "max_iters": 5}, "max_iters"),
        ({"k": 1, "tol": 0.0}, "tol"),
        ({"k": 1, "which": "largest"}, "which"),
    ],
)
def test_validation(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lanczos(DenseOperator(torch.eye(11, dtype=torch.float64)), **kwargs)


def test_dense_operator_validation():
    with pytest.raises(ValueError, match="square"):
        DenseOperator(torch.zeros(3, 4))
    with pytest.raises(ValueError, match="symmetric"):
        DenseOperator(torch.tensor([[1.0, 2.0], [0.0, 1.0]]))
    with pytest.raises(ValueError, match="length 2"):
        DenseOperator(torch.eye(2)).matvec(torch.ones(3))


def test_which_end_stops_on_its_own_pairs(spectral_matrix):
    # a well-separated top and a slowly converging bottom end
    eig = torch.cat([torch.tensor([50.0, 40.0, 30.0]), torch.linspace(-1.0, 1.0, 397)])
    a, _ = spectral_matrix(eig.double(), seed=11)
    both = lanczos(DenseOperator(a), k=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        top = lanczos(DenseOperator(a), k=3, which="top")
    assert top.converged and top.iterations < both.iterations
    assert torch.allclose(top.top, torch.tensor([50.0, 40.0, 30.0], dtype=torch.float64), atol=1e-9)
    assert top.top_residuals.max() <= 1e-6 * 50 * 1.01
    bottom = lanczos(DenseOperator(a), k=3, which="bottom")
    assert torch.allclose(bottom.bottom, both.bottom, atol=1e-8)
