"""probe=surface: centre = the model's loss; an exact quadratic surface (linear model, squared
error) against its closed form; grid and summary arithmetic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from losslands.directions import filter_normalized_direction
from losslands.evaluate import evaluate
from losslands.flat import unflatten
from losslands.probes import surface
from tests.conftest import TINY, assert_probe_outputs, compose_cfg, run_probe_cli
from tests.probes.tiny_jobs import conv_bn, job_context


def _ctx(tmp_path, *overrides, loss_fn=None):
    cfg = compose_cfg(tmp_path, *TINY, "probe=surface", "probe.n_samples=96", *overrides)
    ctx = job_context(cfg)
    if loss_fn is not None:
        ctx.loss_fn = loss_fn
    return ctx, cfg


def test_centre_is_the_models_loss(tmp_path):
    ctx, cfg = _ctx(tmp_path, "probe.resolution=3")
    out = surface.run(ctx, cfg.probe)
    own = evaluate(ctx.model, ctx.probe_batches(96))
    assert out["alphas"] == [-1.0, 0.0, 1.0] and out["betas"] == [-1.0, 0.0, 1.0]
    assert out["losses"][1][1] == out["loss_center"] == pytest.approx(own["loss"], rel=1e-6)
    assert out["acc_center"] == own["acc"]
    # the directions are filter-normalised: each has the norm of the weights' matrices/filters
    weights = (
        sum(float(p.detach().norm() ** 2) for p in ctx.model.parameters() if p.dim() > 1) ** 0.5
    )
    assert out["direction_norms"] == pytest.approx([weights, weights], rel=1e-5)
    grid = np.array(out["losses"])
    ring = np.concatenate([grid[0], grid[-1], grid[1:-1, 0], grid[1:-1, -1]])
    assert out["border_rise"] == pytest.approx(np.mean(ring - grid[1, 1]), rel=1e-9)
    assert out["loss_min"] == grid.min() and out["loss_max"] == grid.max()
    assert set(surface.scalars(out)) == {"loss_center", "loss_min", "loss_max", "border_rise"}
    assert surface.plot(out) is not None


def _squared_error(logits, y):
    return (logits - F.one_hot(y, logits.shape[1]).to(logits.dtype)).pow(2).mean()


def test_linear_model_with_squared_error_gives_the_exact_quadratic(tmp_path):
    ctx, cfg = _ctx(
        tmp_path,
        "model.depth=0",
        "probe.resolution=5",
        "probe.span=[-0.5,1.5]",
        "probe.seed=3",
        loss_fn=_squared_error,
    )
    out = surface.run(ctx, cfg.probe)
    # closed form, float64: residual r0 plus alpha X D1^T + beta X D2^T (bias directions are 0)
    gen = torch.Generator().manual_seed(3)
    d1, d2 = (unflatten(ctx.model, filter_normalized_direction(ctx.model, gen)) for _ in range(2))
    (name_w, name_b) = [n for n, _ in ctx.model.named_parameters()]
    assert torch.count_nonzero(d1[name_b]) == 0 and torch.count_nonzero(d2[name_b]) == 0
    x, y = ctx.probe_data(96)
    x = x.flatten(1).double()
    w, b = ctx.model.get_parameter(name_w).double(), ctx.model.get_parameter(name_b).double()
    r0 = (x @ w.T + b - F.one_hot(y, 10).double()).detach()
    u, v = x @ d1[name_w].double().T, x @ d2[name_w].double().T
    alphas, betas = torch.tensor(out["alphas"]), torch.tensor(out["betas"])
    A, B = alphas[:, None], betas[None, :]
    m = lambda t: t.mean()  # noqa: E731
    expected = (
        m(r0 * r0)
        + 2 * A * m(r0 * u)
        + 2 * B * m(r0 * v)
        + A**2 * m(u * u)
        + 2 * A * B * m(u * v)
        + B**2 * m(v * v)
    )
    assert out["alphas"] == [-0.5, 0.0, 0.5, 1.0, 1.5]
    np.testing.assert_allclose(np.array(out["losses"]), expected.numpy(), rtol=2e-5)


def test_grid_axis_always_holds_the_centre():
    assert surface.grid_axis((-1.0, 1.0), 21).tolist()[10] == 0.0
    even = surface.grid_axis((-1.0, 1.0), 4).tolist()
    assert even == pytest.approx([-1.0, -1 / 3, 0.0, 1 / 3, 1.0]) and 0.0 in even
    with pytest.raises(ValueError, match="probe.span"):
        surface.grid_axis((0.5, 1.0), 5)


def test_batchnorm_recompute_is_optional(tmp_path):
    model = conv_bn()
    ctx, cfg = _ctx(tmp_path, "probe.resolution=3")
    ctx.model = model
    stored = surface.run(ctx, cfg.probe)
    assert not stored["bn_recomputed"]
    assert stored["loss_center"] == pytest.approx(
        evaluate(model, ctx.probe_batches(96))["loss"], rel=1e-6
    )
    cfg.probe.bn_batches = 1
    recomputed = surface.run(ctx, cfg.probe)
    assert (
        recomputed["bn_recomputed"]
        and abs(recomputed["loss_center"] - stored["loss_center"]) > 1e-4
    )


def test_cli_writes_json_and_figure(tmp_path):
    job = run_probe_cli(
        tmp_path, "surface", "trainer.max_epochs=1", "probe.n_samples=64", "probe.resolution=3"
    )
    scalars = {"loss_center", "loss_min", "loss_max", "border_rise"}
    rec = assert_probe_outputs(job, "surface", scalars)
    assert np.array(rec["result"]["losses"]).shape == (3, 3)
