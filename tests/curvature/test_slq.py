"""Stochastic Lanczos quadrature against dense spectra."""

from __future__ import annotations

import pytest
import torch

from losslands.curvature import DenseOperator, hutchinson_trace, slq_density


def _trapezoid(res) -> float:
    return float(torch.trapezoid(res.density, res.grid))


def test_exact_quadrature_on_small_diagonal():
    # Rademacher probes on a diagonal matrix: every eigenvector gets weight exactly 1/dim.
    d = torch.tensor([-3.0, -1.0, 0.5, 1.0, 2.0, 4.0, 6.0, 9.0], dtype=torch.float64)
    res = slq_density(DenseOperator(torch.diag(d)), n_vectors=3, n_iters=50)
    for nodes, weights in zip(res.nodes, res.weights, strict=True):
        assert torch.allclose(nodes, d, atol=1e-10)
        assert torch.allclose(weights, torch.full((8,), 1 / 8, dtype=torch.float64), atol=1e-10)
    assert res.negative_mass == pytest.approx(2 / 8, abs=1e-10)
    # closed form of the smoothed mass below 0: mean over eigenvalues of the Gaussian CDF
    phi = 0.5 * (1 + torch.erf(-d / (res.sigma * 2**0.5)))
    assert res.negative_mass_smoothed == pytest.approx(float(phi.mean()), abs=1e-10)
    below = res.grid <= 0
    assert res.negative_mass_smoothed == pytest.approx(
        float(torch.trapezoid(res.density[below], res.grid[below])), abs=1e-3
    )
    assert res.trace_estimate == pytest.approx(float(d.sum()), abs=1e-10)
    assert _trapezoid(res) == pytest.approx(1.0, abs=1e-4)


def test_invariant_subspace_stops_early(spectral_matrix):
    a, _ = spectral_matrix(torch.tensor([2.0] * 10 + [-1.0] * 10), seed=2)
    res = slq_density(DenseOperator(a), n_vectors=4, n_iters=15)
    for nodes, weights in zip(res.nodes, res.weights, strict=True):
        assert torch.allclose(nodes, torch.tensor([-1.0, 2.0], dtype=torch.float64), atol=1e-10)
        assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize("gap", [True, False])
def test_negative_mass_and_trace_on_a_large_spectrum(spectral_matrix, gap):
    g = torch.Generator().manual_seed(0)
    if gap:  # 30% negative, well away from zero
        eig = torch.cat(
            [-2 + 1.5 * torch.rand(180, generator=g), 0.5 + 3.5 * torch.rand(420, generator=g)]
        )
    else:  # a continuous spectrum through zero: 25% negative
        eig = -1 + 4 * torch.rand(600, generator=g)
    eig = eig.double()
    a, _ = spectral_matrix(eig, seed=1)
    op = DenseOperator(a)
    res = slq_density(op, n_vectors=10, n_iters=80, seed=7)
    fraction = float((eig < 0).double().mean())
    assert res.negative_mass == pytest.approx(fraction, abs=0.02 if gap else 0.04)
    smoothed = float(torch.special.ndtr(-eig / res.sigma).mean())  # on the true spectrum
    assert res.negative_mass_smoothed == pytest.approx(smoothed, abs=0.02 if gap else 0.04)
    # the trace by-product is Hutchinson's estimate with the same Rademacher probes
    hutch = hutchinson_trace(op, n_samples=10, seed=7)
    assert res.trace_estimate == pytest.approx(hutch.trace, rel=1e-10)
    assert abs(res.trace_estimate - float(eig.sum())) < 4 * hutch.stderr
    assert _trapezoid(res) == pytest.approx(1.0, abs=1e-3)
    mean = float(torch.trapezoid(res.grid * res.density, res.grid))
    assert mean == pytest.approx(res.trace_estimate / 600, abs=1e-3)
    assert res.grid[0] < eig.min() and res.grid[-1] > eig.max()
    for weights in res.weights:
        assert float(weights.sum()) == pytest.approx(1.0, abs=1e-12)


def test_density_follows_the_spectrum(spectral_matrix):
    # two bumps holding 1/3 and 2/3 of the eigenvalues
    eig = torch.cat([torch.full((100,), -4.0), torch.full((200,), 3.0)]).double()
    eig += 0.01 * torch.randn(300, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    a, _ = spectral_matrix(eig, seed=3)
    res = slq_density(DenseOperator(a), n_vectors=20, n_iters=40, sigma=0.2)
    left = res.grid < 0
    mass_left = float(torch.trapezoid(res.density[left], res.grid[left]))
    assert mass_left == pytest.approx(1 / 3, abs=0.05)
    assert float(res.grid[torch.argmax(res.density)]) == pytest.approx(3.0, abs=0.1)
    assert res.sigma == 0.2


def test_validation():
    op = DenseOperator(torch.eye(4, dtype=torch.float64))
    with pytest.raises(ValueError, match="n_vectors"):
        slq_density(op, n_vectors=0)
    with pytest.raises(ValueError, match="grid_size"):
        slq_density(op, grid_size=1)
    with pytest.raises(ValueError, match="sigma"):
        slq_density(op, sigma=0.0)
