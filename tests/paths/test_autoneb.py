"""AutoNEB (Draxler et al. 2018) on Müller-Brown with zero-mean mini-batch noise."""

import functools
import math

import numpy as np
import pytest
import torch

from losslands.paths import autoneb
from losslands.paths._common import top_curvature
from losslands.paths.potentials import (
    MULLER_BROWN_MINIMA,
    MULLER_BROWN_SADDLES,
    double_well,
    muller_brown,
    refine_stationary_point,
    ring_chord_barrier,
    ring_valley,
)

F64 = torch.float64
A = torch.tensor(MULLER_BROWN_MINIMA[0], dtype=F64)
B = torch.tensor(MULLER_BROWN_MINIMA[1], dtype=F64)
N_BATCHES = 8


def _tilts(magnitude=30.0):
    gen = torch.Generator().manual_seed(0)
    tilts = torch.randn(N_BATCHES, 2, generator=gen, dtype=F64) * magnitude
    return tilts - tilts.mean(dim=0)  # averages to zero over the evaluation set


def _noisy(scale=1.0):
    """Mini-batch loss: the potential plus a batch-dependent linear tilt (gradient noise ~6% of
    the initial force scale, loss noise of the order of the barrier itself)."""
    tilts = _tilts()

    def loss_fn(theta, batch):
        return scale * (muller_brown(theta) + tilts[batch] @ theta)

    return loss_fn


def _polyline_point(pivots, t):
    seg = (pivots[1:] - pivots[:-1]).norm(dim=1)
    offsets = torch.cat([torch.zeros(1, dtype=F64), seg.cumsum(0)]) / seg.sum()
    j = min(
        int(torch.searchsorted(offsets, torch.tensor(t, dtype=F64), right=True)) - 1, len(seg) - 1
    )
    s = (t - float(offsets[j])) / float(offsets[j + 1] - offsets[j])
    return pivots[j] + s * (pivots[j + 1] - pivots[j])


@functools.cache
def _default_run():
    # default schedule and thresholds, half the default steps per cycle to keep the test short
    return autoneb(
        _noisy(), A, B, list(range(N_BATCHES)), eval_loss=muller_brown, steps_per_cycle=100
    )


def test_finds_muller_brown_saddle_under_minibatch_noise():
    saddle = refine_stationary_point(muller_brown, MULLER_BROWN_SADDLES[0])
    expected = float(muller_brown(saddle) - muller_brown(B))  # barrier to the higher minimum B
    res = _default_run()
    assert res.barrier == pytest.approx(expected, abs=0.5)  # measured +0.003 on 67.50
    assert float((res.saddle - saddle).norm()) < 0.05  # measured 0.008
    assert res.n_inserted >= 1 and res.n_inserted == len(res.insertions)
    assert len(res.pivots) == 3 + res.n_inserted
    assert torch.equal(res.pivots[0], A) and torch.equal(res.pivots[-1], B)
    assert len(res.history) == res.cycles == 6
    assert res.history[0] > expected + 20  # the first, coarse chain overestimates


def test_dense_profile_is_the_loss_along_the_pivot_polyline():
    res = _default_run()
    assert float(res.dense_t[0]) == 0.0 and float(res.dense_t[-1]) == pytest.approx(1.0, abs=1e-12)
    assert bool((res.dense_t.diff() > 0).all())
    for i in range(0, len(res.dense_t), 7):
        point = _polyline_point(res.pivots, float(res.dense_t[i]))
        assert float(res.dense_losses[i]) == pytest.approx(float(muller_brown(point)), abs=1e-9)
    assert torch.allclose(res.pivot_losses, muller_brown(res.pivots), atol=1e-12)
    k = int(res.dense_losses.argmax())
    assert res.saddle_t == float(res.dense_t[k])
    assert res.barrier == pytest.approx(
        float(res.dense_losses.max() - res.pivot_losses[[0, -1]].max())
    )


def test_insertion_happens_where_the_chord_underestimates_the_loss():
    # no relaxation (steps_per_cycle=0): pivots -1, 0, 1 on the double-well axis, so the excess on
    # the left segment is f(-1 + s) - s = s^2 (2 - s)^2 - s, maximal on the 9-point grid at:
    s_grid = np.arange(1, 10) / 10
    excess = s_grid**2 * (2 - s_grid) ** 2 - s_grid
    s_best = float(s_grid[excess.argmax()])
    a = torch.tensor([-1.0, 0.0], dtype=F64)
    b = torch.tensor([1.0, 0.0], dtype=F64)
    res = autoneb(double_well, a, b, None, cycles=2, steps_per_cycle=0, insert_threshold=0.01)
    assert res.threshold == pytest.approx(0.01 * 1.0)  # straight-line loss range is 1
    assert res.n_inserted == 2
    expected_x = torch.tensor([-1.0, -1.0 + s_best, 0.0, 1.0 - s_best, 1.0], dtype=F64)
    assert torch.allclose(res.pivots[:, 0], expected_x, atol=1e-15)
    for ins in res.insertions:
        assert ins.excess == pytest.approx(float(excess.max()), abs=1e-12)


def test_no_insertion_where_the_loss_stays_below_the_chord():
    bowl = lambda th: (th**2).sum()  # noqa: E731 - convex: the chord is never exceeded
    a = torch.tensor([-1.0, 0.5], dtype=F64)
    b = torch.tensor([2.0, 0.3], dtype=F64)
    res = autoneb(bowl, a, b, None, cycles=3, steps_per_cycle=20)
    assert res.n_inserted == 0 and len(res.pivots) == 3


def test_max_pivots_caps_insertions():
    a = torch.tensor([-1.0, 0.0], dtype=F64)
    b = torch.tensor([1.0, 0.0], dtype=F64)
    res = autoneb(
        double_well, a, b, None, cycles=2, steps_per_cycle=0, insert_threshold=0.01, max_pivots=4
    )
    assert len(res.pivots) == 4 and res.n_inserted == 1


@pytest.mark.parametrize("scale", [1e-2, 1e3])
def test_scale_free(scale):
    kwargs = {"cycles": 3, "steps_per_cycle": 40}
    batches = list(range(N_BATCHES))
    ref = autoneb(_noisy(), A, B, batches, eval_loss=muller_brown, **kwargs)
    res = autoneb(
        _noisy(scale),
        A,
        B,
        batches,
        eval_loss=functools.partial(muller_brown, scale=scale),
        **kwargs,
    )
    assert res.n_inserted == ref.n_inserted
    assert torch.allclose(res.pivots, ref.pivots, atol=1e-8)
    assert res.barrier == pytest.approx(scale * ref.barrier, rel=1e-8)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="eval_loss"):
        autoneb(lambda th, b: th.sum(), A, B, iter(range(3)))
    with pytest.raises(ValueError, match="one per cycle"):
        autoneb(double_well, A, B, None, cycles=3, lr_schedule=[0.1])
    with pytest.raises(ValueError, match=">= 3"):
        autoneb(double_well, A, B, None, n_pivots_init=2)
    with pytest.raises(ValueError, match="re-iterable"):
        autoneb(lambda th, b: double_well(th), A, B, iter([1]), eval_loss=double_well)


def test_stiff_noisy_direction_does_not_throw_the_band_out_of_the_valley():
    """Müller-Brown plus a third, stiff coordinate whose mini-batch minimum jitters (as the sharp
    directions of a network's loss do). A step sized by the forces alone is unstable along it;
    the curvature bound keeps the band near z = 0 and no worse than the straight line."""
    kappa = 1e5
    tilts = _tilts()
    offsets = _tilts(0.01)[:, 0]

    def loss_fn(theta, batch):
        return muller_brown(theta[:2]) + tilts[batch] @ theta[:2] + 0.5 * kappa * (theta[2] - offsets[batch]) ** 2

    def eval_loss(theta):
        return muller_brown(theta[:2]) + 0.5 * kappa * theta[2] ** 2

    zero = torch.zeros(1, dtype=F64)
    a, b = torch.cat([A, zero]), torch.cat([B, zero])
    res = autoneb(loss_fn, a, b, list(range(N_BATCHES)), eval_loss=eval_loss, cycles=3, steps_per_cycle=50)
    assert res.curvature == pytest.approx(kappa, rel=0.05)
    line = autoneb(loss_fn, a, b, list(range(N_BATCHES)), eval_loss=eval_loss, cycles=1, steps_per_cycle=0)
    assert math.isfinite(res.barrier) and res.barrier <= line.barrier + 1e-9
    assert float(res.pivots[:, 2].abs().max()) < 0.05


def test_top_curvature_is_the_largest_absolute_hessian_eigenvalue():
    """Against the dense float64 Hessian of a tiny tanh network's loss, and on an indefinite
    quadratic whose most negative eigenvalue has the largest magnitude."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(20, 3, generator=g, dtype=torch.float64), torch.randn(20, generator=g,
                                                                               dtype=torch.float64)

    def loss(theta):
        w1, w2 = theta[:12].reshape(4, 3), theta[12:]
        return ((torch.tanh(x @ w1.T) @ w2 - y) ** 2).mean()

    theta = torch.randn(16, generator=g, dtype=torch.float64)
    dense = torch.linalg.eigvalsh(torch.func.hessian(loss)(theta))
    exact = float(dense.abs().max())
    assert top_curvature(loss, theta, iters=16) == pytest.approx(exact, rel=1e-8)
    assert 0.5 * exact < top_curvature(loss, theta, iters=4) <= exact * (1 + 1e-12)

    q, _ = torch.linalg.qr(torch.randn(30, 30, generator=g, dtype=torch.float64))
    A = q @ torch.diag(torch.linspace(-9.0, 5.0, 30, dtype=torch.float64)) @ q.T
    # Lanczos stops at residual 1e-3 |lambda|: the eigenvalue is then good to ~1e-6
    assert top_curvature(lambda t: 0.5 * t @ A @ t, torch.zeros(30, dtype=torch.float64),
                         iters=30) == pytest.approx(9.0, rel=1e-5)
    assert top_curvature(lambda t: t.sum(), torch.zeros(5, dtype=torch.float64)) == 0.0


def test_ring_valley_path_has_no_barrier_where_the_chord_has_one():
    """Two points on a ring of minima: the chord crosses the central bump (closed-form barrier
    0.92), the path along the ring has none. Mini-batches tilt the ring with zero mean."""
    angle = 0.2
    a = torch.tensor([-math.cos(angle), math.sin(angle)], dtype=F64)
    b = torch.tensor([math.cos(angle), math.sin(angle)], dtype=F64)
    tilts = 0.1 * _tilts(1.0)

    def loss_fn(theta, batch):
        return ring_valley(theta) + tilts[batch] @ theta

    chord = ring_chord_barrier(a, b)
    assert chord > 0.9
    res = autoneb(loss_fn, a, b, list(range(N_BATCHES)), eval_loss=ring_valley,
                  steps_per_cycle=100)
    assert res.barrier < 0.02 * chord
    radius = res.pivots.norm(dim=1)
    assert float((radius - 1).abs().max()) < 0.05  # the pivots sit in the valley
    assert bool((res.pivots[:, 1] > 0).all())  # on the arc the chord's midpoint fell towards
