"""probe=curve: endpoints and the straight line against hand-evaluated models; an untrained
Bézier curve (control point at the midpoint) is the straight line."""

from __future__ import annotations

import numpy as np
import pytest

from losslands.evaluate import evaluate
from losslands.probes import curve
from tests.conftest import TINY, assert_probe_outputs, compose_cfg, run_probe_cli
from tests.probes.tiny_jobs import hand_line, job_context, mlp_pair

SMALL = ("probe.n_samples=96", "probe.n_eval=5", "probe.bn_batches=1")


def _ctx(tmp_path, *overrides):
    cfg = compose_cfg(tmp_path, *TINY, "probe=curve", *SMALL, *overrides)
    model_a, model_b = mlp_pair(tmp_path, seed_b=5)
    return job_context(cfg, model_a, other=model_b), cfg, model_b


def test_untrained_curve_is_the_straight_line(tmp_path):
    ctx, cfg, model_b = _ctx(tmp_path, "probe.steps=0")
    out = curve.run(ctx, cfg.probe)
    data = ctx.probe_batches(96)
    expected = [m["loss"] for m in hand_line(ctx.model, model_b, out["linear_t"], data)]
    np.testing.assert_allclose(out["linear_losses"], expected, rtol=1e-5)
    assert out["t"] == out["linear_t"] and out["control_offset"] == 0.0
    # (1-t)^2 a + 2t(1-t) (a+b)/2 + t^2 b = (1-t) a + t b
    np.testing.assert_allclose(out["losses"], expected, rtol=1e-5)
    assert out["barrier"] == pytest.approx(out["linear_barrier"], abs=1e-5)
    assert out["linear_barrier"] == pytest.approx(
        max(expected) - max(expected[0], expected[-1]), abs=1e-6
    )


def test_trained_curve_keeps_its_ends_and_reports_its_barrier(tmp_path):
    ctx, cfg, model_b = _ctx(tmp_path, "probe.steps=6")
    out = curve.run(ctx, cfg.probe)
    data = ctx.probe_batches(96)
    assert out["loss_a"] == pytest.approx(evaluate(ctx.model, data)["loss"], rel=1e-5)
    assert out["loss_b"] == pytest.approx(evaluate(model_b, data)["loss"], rel=1e-5)
    assert out["barrier"] == pytest.approx(
        max(out["losses"]) - max(out["loss_a"], out["loss_b"]), abs=1e-6
    )
    assert out["control_offset"] > 0 and len(out["train_history"]) == 6
    assert out["pair"] == "sgd-momentum" and out["other"] == "momentum"
    assert set(curve.scalars(out)) == {"barrier", "linear_barrier"}
    assert curve.plot(out) is not None and len(curve.tables(out)["curve"][1]) == 5


def test_cli_writes_json_and_figure(tmp_path):
    job = run_probe_cli(tmp_path, "curve", "trainer.max_epochs=1", *SMALL, "probe.steps=5")
    rec = assert_probe_outputs(job, "curve", {"barrier", "linear_barrier"})
    assert rec["result"]["pair"] == "sgd-momentum" and len(rec["result"]["losses"]) == 5


def test_trained_curve_losses_are_the_models_on_the_curve(tmp_path, monkeypatch):
    """Interior points: the losses equal hand-built models at (1-t)^2 a + 2t(1-t) c + t^2 b."""
    import copy

    from losslands.flat import get_flat, set_flat

    trained = []

    def keep(*args, **kwargs):
        trained.append(real(*args, **kwargs))
        return trained[-1]

    real = curve.bezier_curve
    monkeypatch.setattr(curve, "bezier_curve", keep)
    ctx, cfg, model_b = _ctx(tmp_path, "probe.steps=6")
    out = curve.run(ctx, cfg.probe)
    (res,) = trained
    a, b, c = get_flat(ctx.model), get_flat(model_b), res.control
    assert float((c - 0.5 * (a + b)).norm()) > 0  # trained away from the straight line
    manual, data = copy.deepcopy(ctx.model), ctx.probe_batches(96)
    for t, loss in zip(out["t"], out["losses"], strict=True):
        set_flat(manual, (1 - t) ** 2 * a + 2 * t * (1 - t) * c + t**2 * b)
        assert loss == pytest.approx(evaluate(manual, data)["loss"], rel=1e-5)
