"""Quadratic Bézier curves (Garipov et al. 2018) against a quadrature optimum on the ring valley."""

import functools
import math

import numpy as np
import pytest
import torch
from scipy.optimize import minimize

from losslands.paths import bezier_curve, bezier_point
from losslands.paths.potentials import ring_chord_barrier, ring_valley

F64 = torch.float64
D = 0.2
A = torch.tensor([-math.cos(D), math.sin(D)], dtype=F64)
B = torch.tensor([math.cos(D), math.sin(D)], dtype=F64)


def _curve(c, t):
    a, b = A.numpy(), B.numpy()
    return np.outer((1 - t) ** 2, a) + np.outer(2 * t * (1 - t), c) + np.outer(t**2, b)


def _ring(p):
    return ((p**2).sum(axis=1) - 1.0) ** 2


@functools.cache
def _optimum():
    """argmin_c E_{t~U[0,1]} ring(phi_c(t)) by Gauss-Legendre quadrature (exact: the integrand is a
    polynomial of degree 8 in t) and BFGS, started where training starts; plus its barrier."""
    nodes, weights = np.polynomial.legendre.leggauss(12)
    t, w = (nodes + 1) / 2, weights / 2
    start = 0.5 * (A + B).numpy()
    res = minimize(
        lambda c: float(w @ _ring(_curve(c, t))), start, method="BFGS", options={"gtol": 1e-12}
    )
    fine = np.linspace(0, 1, 100001)
    profile = _ring(_curve(res.x, fine))
    return res.x, float(profile.max()), float(fine[profile.argmax()])


@functools.cache
def _run(scale=1.0):
    return bezier_curve(functools.partial(ring_valley, scale=scale), A, B)


def test_trained_control_matches_quadrature_optimum():
    c_star, barrier_star, t_star = _optimum()
    res = _run()
    assert float(np.linalg.norm(res.control.numpy() - c_star)) < 0.03  # measured 0.011
    assert res.barrier == pytest.approx(barrier_star, abs=3e-3)  # measured 1.3e-4
    chord = ring_chord_barrier(A, B)
    assert res.barrier < 0.05 * chord  # 0.019 vs 0.92
    # the optimal curve peaks twice, symmetrically (c* lies on the symmetry axis)
    assert min(abs(res.saddle_t - t_star), abs(res.saddle_t - (1 - t_star))) < 0.03
    expected = ring_valley(torch.stack([bezier_point(A, res.control, B, float(t)) for t in res.t]))
    assert torch.allclose(res.losses, expected, rtol=1e-12)
    assert len(res.history) == 1000


@pytest.mark.parametrize("scale", [1e-2, 1e3])
def test_defaults_work_across_loss_scales(scale):
    ref, res = _run(), _run(scale)
    assert torch.allclose(res.control, ref.control, atol=1e-4)
    assert res.barrier == pytest.approx(scale * ref.barrier, rel=1e-3)


def test_bezier_point_ends_are_exact_and_midpoint_is_closed_form():
    gen = torch.Generator().manual_seed(0)
    a, c, b = (torch.randn(50, generator=gen) for _ in range(3))
    assert torch.equal(bezier_point(a, c, b, 0.0), a)
    assert torch.equal(bezier_point(a, c, b, 1.0), b)
    assert torch.allclose(bezier_point(a, c, b, 0.5), 0.25 * a + 0.5 * c + 0.25 * b)


def test_minibatches_with_zero_mean_noise_reach_the_same_optimum():
    c_star = _optimum()[0]
    tilts = torch.tensor([[0.3, -0.2], [-0.1, 0.4], [-0.2, -0.2]], dtype=F64)

    def loss_fn(theta, batch):
        return ring_valley(theta) + tilts[batch] @ theta

    batches = [0, 1, 2]
    res = bezier_curve(loss_fn, A, B, batches, steps=1500)
    # the default evaluation loss is the batch mean, where the tilts cancel: the plain ring
    expected = ring_valley(torch.stack([bezier_point(A, res.control, B, float(t)) for t in res.t]))
    assert torch.allclose(res.losses, expected, atol=1e-12)
    assert float(np.linalg.norm(res.control.numpy() - c_star)) < 0.05


def test_seeded_and_custom_optimizer():
    loss = functools.partial(ring_valley, scale=1.0)
    r1 = bezier_curve(loss, A, B, steps=50, seed=3)
    r2 = bezier_curve(loss, A, B, steps=50, seed=3)
    r3 = bezier_curve(loss, A, B, steps=50, seed=4)
    assert torch.equal(r1.control, r2.control) and not torch.equal(r1.control, r3.control)
    sgd = bezier_curve(loss, A, B, steps=300, optimizer=lambda p, lr: torch.optim.SGD(p, lr=lr))
    assert sgd.barrier < 0.5 * ring_chord_barrier(A, B)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="eval_loss"):
        bezier_curve(lambda th, b: th.sum(), A, B, iter([1, 2]))
    with pytest.raises(ValueError, match="'adam'"):
        bezier_curve(ring_valley, A, B, optimizer="lbfgs")
    with pytest.raises(ValueError, match="get_flat"):
        bezier_curve(ring_valley, A, torch.zeros(3))


@pytest.mark.parametrize("dim", [2, 20_000])
def test_first_step_moves_the_control_by_lr_times_the_distance(dim):
    """Adam's first step is lr_abs * sign(g) per coordinate; the documented unit makes its norm
    lr * ||b - a|| in any dimension (tied to ||b - a|| alone it would be sqrt(D) times larger,
    which on a network throws the curve to chance-level loss in one step)."""
    g = torch.Generator().manual_seed(0)
    basis, _ = torch.linalg.qr(torch.randn(dim, 2, generator=g, dtype=F64))  # ring in a random plane

    def rotated(theta):
        plane = theta @ basis
        return ring_valley(plane) + 5.0 * (theta - plane @ basis.T).pow(2).sum(-1)

    a, b = basis @ A, basis @ B
    res = bezier_curve(rotated, a, b, steps=1, lr=0.02)
    moved = float((res.control - 0.5 * (a + b)).norm())
    assert moved == pytest.approx(0.02 * float((b - a).norm()), rel=5e-3)  # Adam eps: 4e-4
    if dim > 2:  # and the defaults still find the curved valley there
        full = bezier_curve(rotated, a, b)
        assert full.barrier == pytest.approx(_optimum()[1], abs=0.01)
