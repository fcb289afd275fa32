"""Analytic potentials: literature stationary points, closed forms, scaling."""

import math

import pytest
import torch

from losslands.paths.potentials import (
    DOUBLE_WELL_MINIMA,
    DOUBLE_WELL_SADDLE,
    DOUBLE_WELL_SADDLE_ENERGY,
    MULLER_BROWN_MINIMA,
    MULLER_BROWN_MINIMA_ENERGIES,
    MULLER_BROWN_SADDLE_ENERGIES,
    MULLER_BROWN_SADDLES,
    double_well,
    muller_brown,
    refine_stationary_point,
    ring_chord_barrier,
    ring_valley,
)


def _hessian_eigs(f, xy):
    return torch.linalg.eigvalsh(torch.func.hessian(f)(xy))


@pytest.mark.parametrize(
    ("points", "energies", "n_negative"),
    [
        (MULLER_BROWN_MINIMA, MULLER_BROWN_MINIMA_ENERGIES, 0),
        (MULLER_BROWN_SADDLES, MULLER_BROWN_SADDLE_ENERGIES, 1),
    ],
)
def test_muller_brown_literature_points_are_stationary(points, energies, n_negative):
    for xy, energy in zip(points, energies, strict=True):
        exact = refine_stationary_point(muller_brown, xy)
        # published to 3 decimals: the exact point lies within rounding of it
        assert torch.allclose(exact, torch.tensor(xy, dtype=torch.float64), atol=1e-3)
        assert float(muller_brown(exact)) == pytest.approx(energy, abs=1e-3)
        assert int((_hessian_eigs(muller_brown, exact) < 0).sum()) == n_negative


def test_muller_brown_literature_gradient_is_small_but_not_zero():
    # the rounded coordinates are only approximately stationary; the refinement is not a no-op
    xy = torch.tensor(MULLER_BROWN_SADDLES[0], dtype=torch.float64)
    g = torch.func.grad(muller_brown)(xy)
    assert 1e-4 < float(g.norm()) < 5.0


def test_scale_multiplies_energy_and_batches_broadcast():
    pts = torch.tensor([[0.1, 0.2], [-0.5, 1.0], [0.6, 0.0]], dtype=torch.float64)
    for f in (muller_brown, ring_valley, double_well):
        batched = f(pts)
        assert batched.shape == (3,)
        assert torch.allclose(f(pts, scale=1e3), 1e3 * batched, rtol=1e-14)
        assert torch.allclose(torch.stack([f(p) for p in pts]), batched, rtol=1e-14)


def test_ring_valley_closed_forms():
    angles = torch.linspace(0, 2 * math.pi, 17, dtype=torch.float64)
    circle = torch.stack([angles.cos(), angles.sin()], dim=1)
    assert float(ring_valley(circle).abs().max()) < 1e-14
    assert float(ring_valley(torch.zeros(2, dtype=torch.float64), scale=3.0)) == 3.0
    a = torch.tensor([-math.cos(0.3), math.sin(0.3)], dtype=torch.float64)
    b = torch.tensor([math.cos(0.3), math.sin(0.3)], dtype=torch.float64)
    s = torch.linspace(0, 1, 20001, dtype=torch.float64)[:, None]
    dense_max = float(ring_valley(a + s * (b - a)).max())
    assert ring_chord_barrier(a, b) == pytest.approx(dense_max, rel=1e-9)
    assert ring_chord_barrier(a, b) == pytest.approx(math.cos(0.3) ** 4, rel=1e-12)


def test_double_well_closed_forms():
    for xy in DOUBLE_WELL_MINIMA:
        assert float(double_well(torch.tensor(xy))) == 0.0
    saddle = refine_stationary_point(double_well, (0.05, -0.02))
    assert torch.allclose(saddle, torch.tensor(DOUBLE_WELL_SADDLE, dtype=torch.float64), atol=1e-12)
    assert float(double_well(saddle)) == pytest.approx(DOUBLE_WELL_SADDLE_ENERGY, abs=1e-12)
    alpha = torch.linspace(0, 1, 11, dtype=torch.float64)
    line = torch.stack([2 * alpha - 1, torch.zeros_like(alpha)], dim=1)
    assert torch.allclose(double_well(line), 16 * alpha**2 * (1 - alpha) ** 2, atol=1e-14)


def test_bad_shape_and_far_newton_start_raise():
    with pytest.raises(ValueError, match=r"\(\.\.\., 2\)"):
        muller_brown(torch.zeros(3))
    with pytest.raises(ValueError, match="start closer"):
        refine_stationary_point(ring_valley, (1e-3, 0.0), steps=1, tol=0.0)
