"""probe=noise against a per-sample-gradient loop and dense Hessians (float64) of a tiny CNN."""

from __future__ import annotations

import copy
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from losslands.flat import trainable
from losslands.probes import noise as probe
from tests.conftest import assert_probe_outputs, run_probe_cli
from tests.probes.tiny_curvature import assert_refused, context, dense_hessian, probe_cfg, tiny_cnn

pytestmark = pytest.mark.usefixtures("one_thread")
N, NS, BATCH = 120, [8, 30, 120, 400], 32


def dense_truth(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """The probe's quantities from a Python loop over samples and dense eigendecompositions."""
    ref = copy.deepcopy(model).double().eval()
    params = [p for _, p in trainable(ref)]
    rows = []
    for i in range(x.shape[0]):
        loss = nn.functional.cross_entropy(ref(x[i : i + 1].double()), y[i : i + 1])
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)]))
    g = torch.stack(rows)
    centred = g - g.mean(0)
    cov = centred.T @ centred / g.shape[0]
    lam_c = float(torch.linalg.eigvalsh(cov)[-1])
    eig_h, vec_h = torch.linalg.eigh(dense_hessian(model, x, y))
    v = vec_h[:, -1]
    along = float(v @ cov @ v)
    n = x.shape[0]
    return {
        "lambda_c": lam_c,
        "lambda_h": float(eig_h[-1]),
        "ratio": lam_c / float(eig_h[-1]),
        "alignment": along / float(eig_h[-1]),
        "alignment_c": along / lam_c,
        "trace_c": float(cov.trace()),
        "lambda_c_corrected": lam_c - float(cov.trace()) / n,
    }


@pytest.fixture(scope="module")
def outcome(one_thread):
    model = tiny_cnn()
    ctx = context(model, batch_size=BATCH)
    cfg = probe_cfg("noise", n_samples=N, repeats=2, ns=NS, max_iters=150, tol=1e-8, chunk_size=16)
    return SimpleNamespace(model=model, ctx=ctx, cfg=cfg, result=probe.run(ctx, cfg))


def test_main_estimate_matches_the_dense_truth_on_each_subset(outcome):
    truths = [dense_truth(outcome.model, *outcome.ctx.probe_data(N, index=i)) for i in range(2)]
    for rep, truth in zip(outcome.result["per_repeat"], truths, strict=True):
        assert rep["n"] == N
        for key, value in truth.items():
            assert rep[key] == pytest.approx(value, rel=1e-4), key
    assert truths[0]["lambda_c"] != pytest.approx(truths[1]["lambda_c"], rel=1e-3)  # disjoint data
    r = outcome.result
    for key in truths[0]:
        values = torch.tensor([t[key] for t in truths], dtype=torch.float64)
        assert r[key] == pytest.approx(float(values.mean()), rel=1e-4), key
        assert r[f"{key}_std"] == pytest.approx(float(values.std()), rel=1e-2, abs=1e-7), key
    assert r["lambda_c_over_b"] == pytest.approx(r["lambda_c"] / BATCH, rel=1e-12)


def test_n_dependence_uses_nested_prefixes(outcome):
    by_n = outcome.result["by_n"]
    assert [r["n"] for r in by_n] == [8, 30, 120]  # 400 > n_samples is skipped
    assert outcome.result["ns_skipped"] == [400]
    x_small, _ = outcome.ctx.probe_data(30, index=0)
    x_main, _ = outcome.ctx.probe_data(N, index=0)
    assert torch.equal(x_small, x_main[:30])
    for r in by_n:
        truth = dense_truth(outcome.model, *outcome.ctx.probe_data(r["n"], index=0))
        assert r["ratio"] == pytest.approx(truth["ratio"], rel=1e-4)
        assert r["lambda_c_corrected"] == pytest.approx(truth["lambda_c_corrected"], rel=1e-4)
        assert r["lambda_c_over_b"] == pytest.approx(truth["lambda_c"] / BATCH, rel=1e-4)
        assert r["lambda_h_converged"] and r["lambda_h_residual"] < 1e-4 * truth["lambda_h"]
    assert outcome.result["lambda_h_converged"]
    assert by_n[-1] == outcome.result["per_repeat"][0]  # n = n_samples reuses subset 0


def test_scalars_plot_tables(outcome):
    s = probe.scalars(outcome.result)
    assert {
        "lambda_c",
        "lambda_h",
        "ratio",
        "alignment",
        "trace_c",
        "lambda_c_over_b",
        "ratio_n8",
        "ratio_n30",
        "ratio_n120",
    } <= set(s)
    assert "ratio_n400" not in s
    assert s["ratio_n30"] == outcome.result["by_n"][1]["ratio"]
    assert s["lambda_c_over_b_n30"] == outcome.result["by_n"][1]["lambda_c_over_b"]
    assert len(probe.plot(outcome.result).axes) == 2
    cols, rows = probe.tables(outcome.result)["by_n"]
    assert cols[:3] == ["n", "subset", "lambda_c"] and len(rows) == 3 + 2


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"ns": [1, 8]}, "probe.ns"),
        ({"n_samples": 1}, "probe.n_samples"),
        ({"chunk_size": 0}, "probe.chunk_size"),
    ],
)
def test_bad_settings_name_the_key(override, key):
    assert_refused(probe, {"n_samples": 10, "repeats": 1, "ns": [4], **override}, key)


def test_cli_writes_json_and_figure(tmp_path):
    job = run_probe_cli(
        tmp_path,
        "noise",
        "probe.n_samples=64",
        "probe.repeats=2",
        "probe.ns=[16,64]",
        "probe.max_iters=10",
    )
    scalars = {"lambda_c", "ratio", "ratio_n16", "ratio_n64", "lambda_c_over_b"}
    record = assert_probe_outputs(job, "noise", scalars, exact=False)
    assert record["result"]["batch_size"] == 64
