"""probe=curve: endpoints and the straight line against hand-evaluated models; an untrained
Bézier curve (control point at the midpoint) is the straight line."""

from __future__ import annotations

import copy
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.conftest import TINY, compose_cfg

from losslands.flat import get_flat, set_flat
from losslands.io import read_json
from losslands.probes import curve
from losslands.probes._pairwise import probe_batches
from losslands.probes.base import ProbeContext, evaluate
from losslands.training.fit import build_datamodule, build_model

CPU = torch.device("cpu")
SMALL = ("probe.n_samples=96", "probe.n_eval=5", "probe.bn_batches=1")


def _ctx(tmp_path, *overrides):
    cfg = compose_cfg(tmp_path, *TINY, "probe=curve", *SMALL, *overrides)
    model_a = build_model(cfg).eval()
    model_b = build_model(compose_cfg(tmp_path, *TINY, "seed=5")).eval()
    ctx = ProbeContext(
        model=model_a,
        datamodule=build_datamodule(cfg),
        cfg=cfg,
        device=CPU,
        load_other=lambda o: model_b,
        quiet=True,
    )
    return ctx, cfg, model_b


def test_untrained_curve_is_the_straight_line(tmp_path):
    ctx, cfg, model_b = _ctx(tmp_path, "probe.max_iters=0")
    out = curve.run(ctx, cfg.probe)
    data = probe_batches(ctx, 96)
    ta, tb = get_flat(ctx.model), get_flat(model_b)
    manual = copy.deepcopy(ctx.model)
    expected = []
    for t in out["linear_t"]:
        set_flat(manual, (1 - t) * ta + t * tb)
        expected.append(evaluate(manual, data)["loss"])
    np.testing.assert_allclose(out["linear_losses"], expected, rtol=1e-5)
    assert out["t"] == out["linear_t"] and out["control_offset"] == 0.0
    # (1-t)^2 a + 2t(1-t) (a+b)/2 + t^2 b = (1-t) a + t b
    np.testing.assert_allclose(out["losses"], expected, rtol=1e-5)
    assert out["barrier"] == pytest.approx(out["linear_barrier"], abs=1e-5)
    assert out["linear_barrier"] == pytest.approx(
        max(expected) - max(expected[0], expected[-1]), abs=1e-6
    )


def test_trained_curve_keeps_its_ends_and_reports_its_barrier(tmp_path):
    ctx, cfg, model_b = _ctx(tmp_path, "probe.max_iters=6")
    out = curve.run(ctx, cfg.probe)
    data = probe_batches(ctx, 96)
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
    r = subprocess.run(
        [
            sys.executable,
            "-m",
            "losslands",
            *TINY,
            "trainer.max_epochs=1",
            "probe=curve",
            *SMALL,
            "probe.max_iters=5",
            "hydra.run.dir=job",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    rec = read_json(tmp_path / "job" / "probes" / "curve.json")
    assert rec["status"] == "completed" and rec["result"]["pair"] == "sgd-momentum"
    assert {"barrier", "linear_barrier"} == set(rec["scalars"]) and len(
        rec["result"]["losses"]
    ) == 5
    assert (tmp_path / "job" / "probes" / "curve.png").stat().st_size > 0
