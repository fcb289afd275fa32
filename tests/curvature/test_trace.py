"""Hutchinson's trace estimator against dense traces and its own variance formula."""

from __future__ import annotations

import pytest
import torch

from losslands.curvature import DenseOperator, hutchinson_trace


def _random_symmetric(dim: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(dim, dim, generator=g, dtype=torch.float64)
    return (a + a.T) / 2 + torch.diag(torch.linspace(0.0, 3.0, dim, dtype=torch.float64))


def test_rademacher_is_exact_on_diagonal_matrices():
    d = torch.linspace(-2.0, 5.0, 30, dtype=torch.float64)
    res = hutchinson_trace(DenseOperator(torch.diag(d)), n_samples=5)
    assert res.trace == pytest.approx(float(d.sum()), abs=1e-12)
    assert res.stderr == pytest.approx(0.0, abs=1e-12)
    assert res.samples.shape == (5,)


@pytest.mark.parametrize("distribution", ["rademacher", "gaussian"])
def test_estimate_and_stderr_match_theory(distribution):
    a = _random_symmetric(60, seed=0)
    off_diag = float((a**2).sum() - (torch.diagonal(a) ** 2).sum())
    # per-probe variance: 2 sum_{i!=j} a_ij^2 (Rademacher), 2 |A|_F^2 (Gaussian); Avron & Toledo
    variance = 2 * off_diag if distribution == "rademacher" else 2 * float((a**2).sum())
    n = 400
    res = hutchinson_trace(DenseOperator(a), n_samples=n, seed=3, distribution=distribution)
    assert abs(res.trace - float(torch.trace(a))) < 4 * res.stderr
    assert res.stderr == pytest.approx((variance / n) ** 0.5, rel=0.15)
    assert float(res.samples.mean()) == res.trace


def test_stderr_is_calibrated_across_seeds():
    a = _random_symmetric(40, seed=1)
    true = float(torch.trace(a))
    z = torch.tensor(
        [
            (r.trace - true) / r.stderr
            for r in (hutchinson_trace(DenseOperator(a), n_samples=30, seed=s) for s in range(200))
        ]
    )
    assert abs(float(z.mean())) < 0.25
    assert 0.8 < float(z.std()) < 1.25


def test_seeded_and_validated():
    op = DenseOperator(_random_symmetric(10, seed=2))
    assert hutchinson_trace(op, seed=4).trace == hutchinson_trace(op, seed=4).trace
    assert hutchinson_trace(op, seed=4).trace != hutchinson_trace(op, seed=5).trace
    with pytest.raises(ValueError, match="n_samples"):
        hutchinson_trace(op, n_samples=1)
    with pytest.raises(ValueError, match="distribution"):
        hutchinson_trace(op, distribution="uniform")
