"""probe=autoneb: profiles against hand-evaluated models, barrier arithmetic, light JSON; the
mini-batch loss and batch stream it trains on."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest
import torch
from torch import nn

from losslands.evaluate import PointEvaluator, evaluate
from losslands.flat import batch_loss, get_flat, set_flat
from losslands.io import to_jsonable
from losslands.probes import autoneb
from tests.conftest import TINY, assert_probe_outputs, compose_cfg, run_probe_cli
from tests.probes.tiny_jobs import conv_bn, hand_line, job_context, mlp_pair

SMALL = (
    "probe.n_samples=96",
    "probe.cycles=2",
    "probe.steps_per_cycle=4",
    "probe.dense_points=3",
    "probe.linear_points=5",
    "probe.bn_batches=1",
)


def _ctx(tmp_path, *overrides):
    cfg = compose_cfg(tmp_path, *TINY, "probe=autoneb", *SMALL, *overrides)
    model_a, model_b = mlp_pair(tmp_path, seed_b=5)
    return job_context(cfg, model_a, other=model_b), cfg, model_b


def test_profiles_barriers_and_a_light_result(tmp_path):
    ctx, cfg, model_b = _ctx(tmp_path)
    out = autoneb.run(ctx, cfg.probe)
    data = ctx.probe_batches(96)
    loss_a, loss_b = evaluate(ctx.model, data)["loss"], evaluate(model_b, data)["loss"]
    assert out["loss_a"] == pytest.approx(loss_a, rel=1e-5) and out["loss_b"] == pytest.approx(
        loss_b, rel=1e-5
    )
    assert out["dense_losses"][0] == out["loss_a"] and out["dense_losses"][-1] == out["loss_b"]
    # the straight line, evaluated on hand-interpolated models
    expected = [m["loss"] for m in hand_line(ctx.model, model_b, out["linear_t"], data)]
    assert out["linear_t"] == pytest.approx(np.linspace(0, 1, 5).tolist())
    np.testing.assert_allclose(out["linear_losses"], expected, rtol=1e-5)
    ends = max(loss_a, loss_b)
    assert out["linear_barrier"] == pytest.approx(max(expected) - ends, abs=1e-5)
    assert out["barrier"] == pytest.approx(max(out["dense_losses"]) - ends, abs=1e-5)
    assert out["saddle_t"] == out["dense_t"][int(np.argmax(out["dense_losses"]))]
    assert out["n_pivots"] == len(out["pivot_t"]) == len(out["pivot_losses"]) >= 3
    assert out["pivot_t"][0] == 0.0 and out["pivot_t"][-1] == pytest.approx(1.0)
    assert out["cycles"] == 2 and len(out["barrier_history"]) == 2 and out["pair"] == "sgd-momentum"
    assert out["path_length_ratio"] >= 1.0 - 1e-6  # a polyline is never shorter than the chord
    # no parameter vectors in the result: it stays far smaller than one model
    assert len(json.dumps(to_jsonable(out))) < 20_000
    s = autoneb.scalars(out)
    assert set(s) == {"barrier", "linear_barrier", "saddle_t", "n_pivots", "cycles"}
    assert autoneb.plot(out) is not None and set(autoneb.tables(out)) == {"path", "line"}


def test_batch_loss_uses_batch_statistics_and_leaves_the_model_alone():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 6 * 6, 3)
    ).eval()
    x, y = torch.randn(16, 3, 8, 8), torch.randint(0, 3, (16,))
    before = copy.deepcopy(model.state_dict())
    f = batch_loss(model, nn.CrossEntropyLoss())
    theta = get_flat(model) * 1.1
    value = f(theta, (x, y))
    reference = copy.deepcopy(model).train()
    set_flat(reference, theta)
    torch.testing.assert_close(value, nn.CrossEntropyLoss()(reference(x), y))
    (g,) = torch.autograd.grad(f(theta.requires_grad_(), (x, y)), theta)
    assert g.shape == theta.shape and g.abs().sum() > 0
    assert not model.training and all(
        torch.equal(before[k], v) for k, v in model.state_dict().items()
    )


def test_evaluator_loss_refreshes_batchnorm_statistics_at_every_point(tmp_path):
    ctx, _, _ = _ctx(tmp_path)
    model = conv_bn()
    ctx.model = model
    evaluator = PointEvaluator(model, ctx.loss_fn, ctx.bn_batches(2))
    data = ctx.probe_batches(96)
    f = evaluator.loss(data)
    theta = get_flat(model)
    for point in (theta, 1.5 * theta, theta):
        # a fresh evaluator per point: its statistics cannot be left over from another point
        reference = PointEvaluator(model, ctx.loss_fn, ctx.bn_batches(2)).metrics(point, data)
        assert float(f(point)) == pytest.approx(reference["loss"], rel=1e-5)
    assert float(f(theta)) != pytest.approx(float(f(1.5 * theta)), rel=1e-3)


def test_train_batches_reshuffle_every_pass_and_are_reproducible(tmp_path):
    ctx, _, _ = _ctx(tmp_path)
    first = ctx.train_batches(64, seed=3)
    again = ctx.train_batches(64, seed=3)
    p1, p2 = [y for _, y in first], [y for _, y in first]
    assert not all(torch.equal(a, b) for a, b in zip(p1, p2, strict=True))
    assert all(torch.equal(a, b) for a, b in zip(p1, [y for _, y in again], strict=True))
    assert sorted(torch.cat(p1).tolist()) == sorted(ctx.data.train_y.tolist())


def test_cli_writes_json_and_figure(tmp_path):
    job = run_probe_cli(tmp_path, "autoneb", "trainer.max_epochs=1", *SMALL)
    scalars = {"barrier", "linear_barrier", "saddle_t", "n_pivots", "cycles"}
    rec = assert_probe_outputs(job, "autoneb", scalars)
    assert rec["result"]["pair"] == "sgd-momentum"


def test_dense_and_pivot_losses_are_the_models_on_the_polyline(tmp_path, monkeypatch):
    """Interior points too: each dense loss equals a hand-built model at its arc-length position
    on the pivot polyline, and each pivot loss the model at that pivot."""
    found = []
    real = autoneb.autoneb

    def keep(*args, **kwargs):
        found.append(real(*args, **kwargs))
        return found[-1]

    monkeypatch.setattr(autoneb, "autoneb", keep)
    ctx, cfg, _ = _ctx(tmp_path)
    out = autoneb.run(ctx, cfg.probe)
    (res,) = found
    pivots = res.pivots.double()
    seg = (pivots[1:] - pivots[:-1]).norm(dim=1)
    offsets = torch.cat([torch.zeros(1, dtype=torch.float64), seg.cumsum(0)]) / seg.sum()
    manual, data = copy.deepcopy(ctx.model), ctx.probe_batches(96)

    def at(theta):
        set_flat(manual, theta.float())
        return evaluate(manual, data)["loss"]

    for theta, loss in zip(pivots, out["pivot_losses"], strict=True):
        assert loss == pytest.approx(at(theta), rel=1e-5)
    assert len(out["dense_t"]) > len(pivots)  # points between the pivots are checked too
    for t, loss in zip(out["dense_t"], out["dense_losses"], strict=True):
        j = min(int(torch.searchsorted(offsets, torch.tensor(t, dtype=torch.float64),
                                       right=True)) - 1, len(seg) - 1)
        s = (t - float(offsets[j])) / float(offsets[j + 1] - offsets[j])
        assert loss == pytest.approx(at(pivots[j] + s * (pivots[j + 1] - pivots[j])), rel=1e-5)
