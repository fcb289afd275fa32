"""Linear interpolation and the Entezari et al. 2022 barrier against closed forms."""

import pytest
import torch

from losslands.paths import default_alphas, entezari_barrier, interpolate, linear_interpolation
from losslands.paths.potentials import DOUBLE_WELL_LINEAR_BARRIER, double_well


def test_default_grid_spans_range_and_holds_exact_anchors():
    grid = default_alphas()
    assert grid.dtype == torch.float64 and len(grid) == 61
    assert float(grid[0]) == -1.0 and float(grid[-1]) == 2.0
    assert (grid == 0.0).sum() == 1 and (grid == 1.0).sum() == 1
    assert torch.allclose(grid.diff(), torch.full((60,), 0.05, dtype=torch.float64), atol=1e-12)


def test_grid_that_misses_anchors_gets_them_added():
    grid = default_alphas(8, -1.0, 2.0)  # spacing 3/7 skips 0 and 1
    assert len(grid) == 10 and (grid == 0.0).any() and (grid == 1.0).any()
    assert torch.all(grid.diff() > 0)


def test_endpoints_reproduced_bit_for_bit():
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(1000, generator=gen) * 10
    b = torch.randn(1000, generator=gen) * 1e-3
    # the naive form is not exact at alpha = 1 on this data: the special case matters
    assert not torch.equal(a + 1.0 * (b - a), b)
    assert torch.equal(interpolate(a, b, 0.0), a)
    assert torch.equal(interpolate(a, b, 1.0), b)
    seen = []
    linear_interpolation(lambda th: seen.append(th.clone()) or th.sum(), a, b)
    grid = default_alphas()
    assert torch.equal(seen[int(torch.nonzero(grid == 0.0))], a)
    assert torch.equal(seen[int(torch.nonzero(grid == 1.0))], b)


def test_double_well_profile_and_barrier_match_closed_form():
    a = torch.tensor([-1.0, 0.0], dtype=torch.float64)
    b = torch.tensor([1.0, 0.0], dtype=torch.float64)
    res = linear_interpolation(double_well, a, b)
    alpha = res.alphas
    assert torch.allclose(res.losses, 16 * alpha**2 * (1 - alpha) ** 2, rtol=1e-12, atol=1e-12)
    assert res.barrier == pytest.approx(DOUBLE_WELL_LINEAR_BARRIER, abs=1e-12)
    assert res.barrier_alpha == 0.5
    assert res.loss_a == 0.0 and res.loss_b == 0.0


def test_convex_loss_has_nonpositive_barrier():
    gen = torch.Generator().manual_seed(1)
    m, a, b = (torch.randn(5, generator=gen, dtype=torch.float64) for _ in range(3))
    res = linear_interpolation(lambda th: ((th - m) ** 2).sum(), a, b)
    # L(alpha) - chord = -alpha (1 - alpha) ||b - a||^2 <= 0, zero only at the ends
    inside = (res.alphas >= 0) & (res.alphas <= 1)
    al = res.alphas[inside]
    chord = (1 - al) * res.loss_a + al * res.loss_b
    expected = -al * (1 - al) * ((b - a) ** 2).sum()
    assert torch.allclose(res.losses[inside] - chord, expected, atol=1e-12)
    assert res.barrier == pytest.approx(0.0, abs=1e-12)
    assert res.barrier_alpha in (0.0, 1.0)


def test_concave_loss_with_unequal_ends_barrier_is_closed_form():
    gen = torch.Generator().manual_seed(2)
    m, a, b, w = (torch.randn(4, generator=gen, dtype=torch.float64) for _ in range(4))
    w = 5 * w  # tilt: the endpoint losses differ and the raw maximum is not at alpha = 0.5

    def loss(th):
        return -((th - m) ** 2).sum() + w @ th

    res = linear_interpolation(loss, a, b, n_points=101)
    assert res.loss_a != pytest.approx(res.loss_b)
    # L(alpha) - chord = alpha (1 - alpha) ||b - a||^2, maximal at 0.5 whatever the tilt
    assert res.barrier == pytest.approx(float(((b - a) ** 2).sum()) / 4, rel=1e-12)
    assert res.barrier_alpha == pytest.approx(0.5, abs=1e-12)


def test_eval_fn_metrics_progress_and_explicit_alphas():
    a = torch.tensor([-1.0, 2.0], dtype=torch.float64)
    b = torch.tensor([1.0, 2.0], dtype=torch.float64)
    calls = []
    res = linear_interpolation(
        double_well,
        a,
        b,
        alphas=[0.25, 0.5, 0.75],
        eval_fn=lambda th: {"x": th[0], "y": float(th[1])},
        progress=lambda i, n, info: calls.append((i, n, info["alpha"])),
    )
    assert res.alphas.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert torch.allclose(res.metrics["x"], 2 * res.alphas - 1, atol=1e-15)
    assert torch.all(res.metrics["y"] == 2.0)
    assert [c[0] for c in calls] == [1, 2, 3, 4, 5] and calls[-1][1:] == (5, 1.0)


def test_errors_name_the_fix():
    with pytest.raises(ValueError, match="get_flat"):
        linear_interpolation(double_well, torch.zeros(2), torch.zeros(3))
    with pytest.raises(ValueError, match="same keys"):
        linear_interpolation(
            double_well, torch.zeros(2), torch.ones(2), eval_fn=lambda th: {str(float(th[0])): 0.0}
        )
    with pytest.raises(ValueError, match="0.0 and 1.0"):
        entezari_barrier(torch.tensor([0.0, 0.5]), torch.zeros(2))
