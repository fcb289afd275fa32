"""Nudged elastic band against analytic saddles (Müller-Brown, ring valley, double well)."""

import functools
import math

import pytest
import torch

from losslands.paths import improved_tangents, neb, neb_forces
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


@functools.cache
def _saddle():
    # S1, the highest point of the A-B minimum energy path, refined to machine precision
    xy = refine_stationary_point(muller_brown, MULLER_BROWN_SADDLES[0])
    return xy, float(muller_brown(xy))


@functools.cache
def _mb_run(scale=1.0, climbing=True):
    return neb(functools.partial(muller_brown, scale=scale), A, B, climbing=climbing)


def test_climbing_image_lands_on_muller_brown_saddle():
    saddle, energy = _saddle()
    res = _mb_run()
    assert res.converged
    top = res.path[res.saddle_index]
    assert float((top - saddle).norm()) < 2e-3  # measured 4.4e-4
    assert res.max_loss == pytest.approx(energy, abs=1e-2)  # measured 4e-5
    assert res.barrier == pytest.approx(energy - float(muller_brown(B)), abs=1e-2)
    assert res.force_norm < 1e-3 * res.force_scale
    assert torch.equal(res.path[0], A) and torch.equal(res.path[-1], B)
    assert torch.allclose(res.losses, muller_brown(res.path), rtol=1e-14)


def _closest_on_polyline(path, point):
    """(distance, segment index, fraction along it) of the polyline point nearest ``point``."""
    best = (math.inf, -1, 0.0)
    for j in range(len(path) - 1):
        d = path[j + 1] - path[j]
        s = min(max(float((point - path[j]) @ d) / float(d @ d), 0.0), 1.0)
        best = min(best, (float((path[j] + s * d - point).norm()), j, s))
    return best


def test_without_climbing_the_chain_straddles_the_saddle():
    saddle, energy = _saddle()
    res = _mb_run(climbing=False)
    assert res.converged
    path, losses, k = res.path, res.losses, res.saddle_index
    # the saddle is above every image, and its projection onto the chain falls on a segment of
    # the highest image, strictly between two images
    assert float(losses.max()) < energy
    dist, seg, s = _closest_on_polyline(path, saddle)
    assert seg in (k - 1, k) and 0.0 < s < 1.0
    assert dist < 0.1  # chord through a curved valley: measured 0.045
    assert losses[seg] < energy and losses[seg + 1] < energy


@pytest.mark.parametrize("scale", [1e-2, 1e3])
def test_defaults_are_scale_free(scale):
    ref, res = _mb_run(), _mb_run(scale=scale)
    assert res.converged and res.steps == ref.steps
    assert res.force_scale == pytest.approx(scale * ref.force_scale, rel=1e-12)
    assert torch.allclose(res.path, ref.path, atol=1e-9)
    assert torch.allclose(res.losses, scale * ref.losses, rtol=1e-9)


def test_ring_valley_path_has_no_barrier_but_the_chord_does():
    d = 0.2
    a = torch.tensor([-math.cos(d), math.sin(d)], dtype=F64)
    b = torch.tensor([math.cos(d), math.sin(d)], dtype=F64)
    chord = ring_chord_barrier(a, b)
    assert chord == pytest.approx(math.cos(d) ** 4, rel=1e-12)
    res = neb(ring_valley, a, b)
    assert res.converged
    assert res.barrier < 1e-5 * chord  # measured 1.4e-8
    assert float((res.path.norm(dim=1) - 1).abs().max()) < 1e-3
    assert bool((res.path[:, 1] > 0).all())  # around the near side of the ring


@pytest.mark.parametrize("optimizer", ["fire", "sd"])
def test_double_well_from_bent_chain_reaches_origin(optimizer):
    a = torch.tensor([-1.0, 0.0], dtype=F64)
    b = torch.tensor([1.0, 0.0], dtype=F64)
    bent = torch.tensor([[-1.0, 0.0], [-0.4, 0.5], [0.1, 0.6], [0.6, -0.3], [1.0, 0.0]], dtype=F64)
    res = neb(double_well, a, b, init_path=bent, optimizer=optimizer, tol=1e-6, max_steps=3000)
    assert res.converged
    assert float(res.path[res.saddle_index].norm()) < 1e-5
    assert res.barrier == pytest.approx(1.0, abs=1e-9)
    assert float(res.path[:, 1].abs().max()) < 1e-5


def test_straight_chain_on_the_mep_converges_at_once():
    a = torch.tensor([-1.0, 0.0], dtype=F64)
    b = torch.tensor([1.0, 0.0], dtype=F64)
    res = neb(double_well, a, b, n_images=5)
    assert res.converged and res.steps == 0 and res.barrier == 1.0


def test_improved_tangent_cases():
    path = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 2.0], [1.0, 5.0]], dtype=F64)
    # rising energies: tangent points to the next image
    rising = improved_tangents(path, torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=F64))
    assert torch.allclose(rising, torch.tensor([[0.0, 1.0], [0.0, 1.0]], dtype=F64))
    # falling: to the previous image
    falling = improved_tangents(path, torch.tensor([3.0, 2.0, 1.0, 0.0], dtype=F64))
    assert torch.allclose(falling, torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=F64))
    # maximum at image 1 with dV+ = -3, dV- = -1 (V_next < V_prev): tau = tau+ dVmin + tau- dVmax
    peak = improved_tangents(path, torch.tensor([1.0, 2.0, -1.0, -2.0], dtype=F64))
    expected = torch.tensor([0.0, 2.0]) * 1.0 + torch.tensor([1.0, 0.0]) * 3.0
    assert torch.allclose(peak[0], (expected / expected.norm()).to(F64))


def test_force_projection_properties():
    gen = torch.Generator().manual_seed(0)
    path = torch.randn(6, 3, generator=gen, dtype=F64)
    losses = torch.tensor([0.0, 2.0, 1.0, 3.0, 5.0, 0.5], dtype=F64)
    grads = torch.randn(6, 3, generator=gen, dtype=F64)
    k = 0.7
    tau = improved_tangents(path, losses)
    seg = (path[1:] - path[:-1]).norm(dim=1)
    forces = neb_forces(path, losses, grads, k, climb=4)
    along = (forces * tau).sum(dim=1)
    g_along = (grads[1:-1] * tau).sum(dim=1)
    perp = forces - along[:, None] * tau
    g_perp = grads[1:-1] - g_along[:, None] * tau
    assert torch.allclose(perp, -g_perp, atol=1e-12)
    assert torch.allclose(along[:3], k * (seg[1:4] - seg[:3]), atol=1e-12)
    assert along[3] == pytest.approx(
        float(g_along[3]), abs=1e-12
    )  # climbing: parallel force inverted


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match=">= 3"):
        neb(double_well, torch.zeros(2), torch.ones(2), n_images=2)
    with pytest.raises(ValueError, match="'fire' or 'sd'"):
        neb(double_well, torch.zeros(2), torch.ones(2), optimizer="adam")
    with pytest.raises(ValueError, match="init_path"):
        neb(double_well, torch.zeros(2), torch.ones(2), init_path=torch.zeros(4, 2))
    with pytest.raises(ValueError, match="zero length"):
        neb(double_well, torch.ones(2), torch.ones(2))


def test_float32_parameters():
    saddle, energy = _saddle()
    res = neb(muller_brown, A.float(), B.float())
    assert res.converged and res.path.dtype == torch.float32
    assert float((res.path[res.saddle_index].double() - saddle).norm()) < 2e-3
    assert res.max_loss == pytest.approx(energy, abs=1e-2)
