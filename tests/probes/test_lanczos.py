"""probe=lanczos against dense float64 Hessians of a tiny BatchNorm CNN on the same subsets."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from losslands.probes import lanczos as probe
from tests.conftest import assert_probe_outputs, run_probe_cli
from tests.probes.tiny_curvature import (
    ADAMW,
    assert_refused,
    context,
    dense_hessian,
    probe_cfg,
    tiny_cnn,
)

pytestmark = pytest.mark.usefixtures("one_thread")
N, K = 100, 5


@pytest.fixture(scope="module")
def outcome(one_thread):
    model = tiny_cnn()
    ctx = context(model)
    # max_iters and slq_iters >= dim (150): Lanczos and the SLQ quadrature are exact.
    cfg = probe_cfg(
        "lanczos",
        n_samples=N,
        repeats=2,
        max_repeats=2,
        k=K,
        max_iters=160,
        tol=1e-8,
        certify_iters=160,
        hutchinson_samples=20,
        slq_vectors=6,
        slq_iters=160,
        grid_size=200,
    )
    result = probe.run(ctx, cfg)
    dense = [dense_hessian(model, *ctx.probe_data(N, index=i)) for i in range(2)]
    return SimpleNamespace(model=model, ctx=ctx, cfg=cfg, result=result, dense=dense)


def test_extremes_match_the_dense_spectrum_of_each_subset(outcome):
    for rep, h in zip(outcome.result["per_repeat"], outcome.dense, strict=True):
        eig = torch.linalg.eigvalsh(h)
        scale = float(eig.abs().max())
        assert torch.allclose(
            torch.tensor(rep["top"], dtype=torch.float64), eig[-K:].flip(0), atol=1e-5 * scale
        )
        assert torch.allclose(
            torch.tensor(rep["bottom"], dtype=torch.float64), eig[:K], atol=1e-5 * scale
        )
        assert rep["converged"] and max(rep["top_residuals"] + rep["bottom_residuals"]) < 1e-4
        assert all(rep["top_certified"]) and all(rep["bottom_certified"])
        for end, truth in (("top", eig[-K:].flip(0)), ("bottom", eig[:K])):
            err = (torch.tensor(rep[end], dtype=torch.float64) - truth).abs()
            assert bool((err <= torch.tensor(rep[f"{end}_bounds"]) + 1e-6 * scale).all())
    assert eig[0] < 0  # indefinite: no condition number
    tops = [float(torch.linalg.eigvalsh(h)[-1]) for h in outcome.dense]
    bottoms = [float(torch.linalg.eigvalsh(h)[0]) for h in outcome.dense]
    r = outcome.result
    assert r["lambda_max"] == pytest.approx(sum(tops) / 2, rel=1e-5)
    assert r["lambda_max_std"] == pytest.approx(abs(tops[0] - tops[1]) / math.sqrt(2), rel=1e-3)
    assert r["lambda_max_se"] == pytest.approx(abs(tops[0] - tops[1]) / 2, rel=1e-3)
    assert r["lambda_max_n"] == 2 and r["lambda_min_n"] == 2
    assert r["lambda_min"] == pytest.approx(sum(bottoms) / 2, rel=1e-5)
    assert r["lambda_min_std"] == pytest.approx(
        abs(bottoms[0] - bottoms[1]) / math.sqrt(2), rel=1e-3
    )
    assert r["abs_min_over_max"] == pytest.approx(abs(sum(bottoms)) / sum(tops), rel=1e-5)
    assert r["lambda_max_over_min"] is None


def test_repeats_use_disjoint_subsets(outcome):
    a, b = outcome.result["per_repeat"]
    assert abs(a["top"][0] - b["top"][0]) > 1e-3  # different data, different numbers
    xa, _ = outcome.ctx.probe_data(N, index=0)
    xb, _ = outcome.ctx.probe_data(N, index=1)
    flat_a, flat_b = xa.reshape(N, -1), xb.reshape(N, -1)
    assert not (torch.cdist(flat_a, flat_b).min() == 0)  # no image shared


def test_deflated_trace_against_the_dense_trace(outcome):
    traces = []
    for rep, h in zip(outcome.result["per_repeat"], outcome.dense, strict=True):
        eig = torch.linalg.eigvalsh(h)
        exact = float(eig[-K:].sum() + eig[:K].sum())
        assert rep["trace_exact_part"] == pytest.approx(exact, rel=1e-6)
        # 20 extra + 6 SLQ probes + the extremes' run + the certification run
        assert rep["trace_samples"] == 28
        assert abs(rep["trace"] - float(h.trace())) < 4 * rep["trace_stderr"]
        traces.append(rep["trace"])
    r = outcome.result
    assert r["trace"] == pytest.approx(sum(traces) / 2, rel=1e-9)
    se = [rep["trace_stderr"] for rep in r["per_repeat"]]
    assert r["trace_stderr"] == pytest.approx(math.hypot(*se) / 2, rel=1e-9)
    assert r["trace_se"] == pytest.approx(abs(traces[0] - traces[1]) / 2, rel=1e-6)


def test_negative_mass_matches_the_dense_spectrum(outcome):
    masses = []
    for rep, h in zip(outcome.result["per_repeat"], outcome.dense, strict=True):
        eig = torch.linalg.eigvalsh(h)
        cut = 1e-4 * float(eig.abs().max())
        assert rep["negative_mass"] == pytest.approx(float((eig < -cut).double().mean()), abs=0.08)
        assert rep["near_zero_mass"] == pytest.approx(float((eig.abs() <= cut).double().mean()), abs=0.08)
        grid = torch.tensor(rep["density_grid"], dtype=torch.float64)
        density = torch.tensor(rep["density"], dtype=torch.float64)
        assert float(torch.trapezoid(density, grid)) == pytest.approx(1.0, abs=0.1)
        assert grid[0] < eig[0] and grid[-1] > eig[-1]
        masses.append(rep["negative_mass"])
    assert outcome.result["negative_mass"] == pytest.approx(sum(masses) / 2)


def test_half_check_is_lambda_max_on_half_of_subset_0(outcome):
    x, y = outcome.ctx.probe_data(N, index=0)
    truth = float(torch.linalg.eigvalsh(dense_hessian(outcome.model, x[: N // 2], y[: N // 2]))[-1])
    assert outcome.result["half"]["n"] == N // 2
    assert outcome.result["lambda_max_half"] == pytest.approx(truth, rel=1e-5)


def test_products_are_accounted_per_output(outcome):
    r = outcome.result
    per = sum(rep["matvecs"] for rep in r["per_repeat"])
    assert r["matvecs"] == per + r["half"]["matvecs"]
    assert sum(r["matvecs_by_output"].values()) == r["matvecs"]
    for rep in r["per_repeat"]:
        assert sum(rep["matvecs_by_output"].values()) == rep["matvecs"]
        assert rep["matvecs_by_output"]["trace"] == 20
        # each probe stops at the deflated rank (140) or earlier, when its space is invariant
        assert 6 <= rep["matvecs_by_output"]["density"] <= 6 * 140
        assert set(rep["seconds_by_output"]) == {"extremes", "certify", "trace", "density"}


def test_target_precision_adds_subsets_until_met():
    model = tiny_cnn()
    base = dict(n_samples=40, repeats=2, max_repeats=5, k=2, max_iters=60, tol=1e-6,
                certify_iters=20, hutchinson_samples=3, slq_vectors=0, half_check=False)
    loose = probe.run(context(model), probe_cfg("lanczos", target_rel_se=10.0, **base))
    tight = probe.run(context(model), probe_cfg("lanczos", target_rel_se=1e-9, **base))
    assert loose["subsets"] == 2 and tight["subsets"] == 5
    for a, b in zip(tight["per_repeat"][:2], loose["per_repeat"], strict=True):  # same subsets
        assert a["top"] == b["top"] and a["trace"] == b["trace"]


def test_scalars_plot_and_tables(outcome):
    s = probe.scalars(outcome.result)
    assert set(s) >= {
        "lambda_max", "lambda_max_se", "lambda_max_std", "lambda_min", "abs_min_over_max",
        "lambda_max_over_min", "trace", "trace_se", "trace_stderr", "negative_mass",
        "near_zero_mass", "matvecs", "n_samples", "subsets",
    }
    assert set(s) <= set(probe.INFO.scalars)
    assert s["matvecs"] > 0 and s["n_samples"] == N
    assert len(probe.plot(outcome.result).axes) == 2
    t = probe.tables(outcome.result)
    assert len(t["eigenvalues"][1]) == 2 * 2 * K
    assert len(t["density"][1]) == 2 * 200


def test_weight_decay_shifts_the_spectrum_for_sgd_only():
    model = tiny_cnn(convex=True)  # logistic regression: PSD data Hessian
    cfg = probe_cfg(
        "lanczos",
        n_samples=50,
        repeats=2,
        k=2,
        max_iters=140,
        tol=1e-8,
        hutchinson_samples=4,
        slq_vectors=1,
        slq_iters=10,
        certify_iters=60,
        include_weight_decay=True,
    )
    with_wd = probe.run(context(model), cfg)
    dense = [
        torch.linalg.eigvalsh(dense_hessian(model, *context(model).probe_data(50, i)))
        for i in range(2)
    ]
    for rep, eig in zip(with_wd["per_repeat"], dense, strict=True):
        assert rep["top"][0] == pytest.approx(float(eig[-1]) + 5e-4, rel=1e-4)
        assert rep["bottom"][0] == pytest.approx(float(eig[0]) + 5e-4, abs=1e-5)
    # Positive definite (wd > tol * lambda_max): the ratio of the certified means is reported;
    # without the L2 term the logit-shift null space makes lambda_min ~ 0 and the ratio is null.
    assert with_wd["lambda_max_over_min"] == pytest.approx(
        with_wd["lambda_max"] / with_wd["lambda_min"]
    )
    adamw = probe.run(context(model, optimizer=ADAMW), cfg)
    assert adamw["weight_decay"] == 0.0 and adamw["lambda_max_over_min"] is None
    assert adamw["per_repeat"][0]["top"][0] == pytest.approx(float(dense[0][-1]), rel=1e-4)


def test_pyhessian_backend_agrees_within_its_tolerance():
    model = tiny_cnn()
    cfg = probe_cfg(
        "lanczos",
        n_samples=N,
        repeats=1,
        k=2,
        max_iters=60,
        hutchinson_samples=2,
        slq_vectors=1,
        slq_iters=5,
        backend="pyhessian",
        pyhessian_top_n=1,
    )
    state = torch.get_rng_state()
    result = probe.run(context(model), cfg)
    assert torch.equal(state, torch.get_rng_state())  # its global-RNG draws are forked away
    assert all(p.grad is None for p in model.parameters())
    ours, theirs = result["per_repeat"][0]["top"][0], result["per_repeat"][0]["pyhessian_top"][0]
    assert theirs == pytest.approx(ours, rel=2e-2)
    assert result["pyhessian_top_mean"] == [theirs]  # one subset: its value; PyHessian sorted
    assert probe.scalars(result)["pyhessian_lambda_max"] == theirs
    assert probe.tables(result)["eigenvalues"][1][-1][1] == "pyhessian_top"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"k": 0}, "probe.k"),
        ({"k": 2.5}, "probe.k"),
        ({"k": 80, "max_iters": 160}, "probe.k=80"),
        ({"max_iters": 3}, "probe.max_iters"),
        ({"backend": "scipy"}, "probe.backend"),
        ({"repeats": 0}, "probe.repeats"),
        ({"hutchinson_samples": -1}, "probe.hutchinson_samples"),
        ({"stop": "never"}, "probe.stop"),
        ({"max_repeats": 0}, "probe.max_repeats"),
        ({"n_samples": 200, "max_repeats": 4}, "n_samples x probe.max_repeats"),
    ],
)
def test_bad_settings_name_the_key(override, message):
    base = {"n_samples": 10, "repeats": 1, "k": 2, "max_iters": 10}
    assert_refused(probe, {**base, **override}, message)


def test_cli_writes_json_and_figure(tmp_path):
    job = run_probe_cli(
        tmp_path,
        "lanczos",
        "probe.n_samples=64",
        "probe.repeats=2",
        "probe.max_repeats=2",
        "probe.certify_iters=5",
        "probe.k=2",
        "probe.max_iters=12",
        "probe.hutchinson_samples=3",
        "probe.slq_vectors=1",
        "probe.slq_iters=8",
    )
    record = assert_probe_outputs(job, "lanczos", {"lambda_max", "matvecs"}, exact=False)
    assert record["config"]["k"] == 2
    assert len(record["result"]["per_repeat"]) == 2
    assert record["scalars"]["lambda_max"] > 0 and record["scalars"]["matvecs"] > 0


def test_per_layer_blocks_match_the_dense_diagonal_blocks_and_sum_to_the_trace():
    model = tiny_cnn()
    ctx = context(model)
    cfg = probe_cfg("lanczos", n_samples=N, repeats=1, max_repeats=1, k=2, max_iters=160,
                    tol=1e-8, certify_iters=60, hutchinson_samples=30, slq_vectors=0,
                    half_check=False, blocks="layer", block_k=1)
    result = probe.run(ctx, cfg)
    dense = dense_hessian(model, *ctx.probe_data(N, index=0))
    idx = probe.block_indices(model, "layer")
    assert [b["block"] for b in result["blocks"]] == list(idx) == ["0", "1", "5"]
    total_err2 = 0.0
    for b in result["blocks"]:
        block = dense[idx[b["block"]]][:, idx[b["block"]]]
        eig = torch.linalg.eigvalsh(block)
        assert b["top"][0] == pytest.approx(float(eig[-1]), rel=1e-6, abs=1e-9)
        assert b["bottom"][0] == pytest.approx(float(eig[0]), rel=1e-6, abs=1e-6 * float(eig[-1]))
        assert abs(b["trace"] - float(block.trace())) <= 4 * b["trace_stderr"] + 1e-9
        total_err2 += b["trace_stderr"] ** 2
    # per-layer traces sum to the full trace within the estimates' errors
    full = result["per_repeat"][0]
    summed = sum(b["trace"] for b in result["blocks"])
    assert abs(summed - full["trace"]) <= 4 * math.sqrt(total_err2 + full["trace_stderr"] ** 2)
    assert summed == pytest.approx(float(dense.trace()), abs=4 * math.sqrt(total_err2) + 1e-9)
    by = full["matvecs_by_output"]
    assert sum(by.values()) == full["matvecs"] and by["blocks"] > 0
    assert "blocks" in probe.tables(result) and len(probe.plot(result).axes) == 3


@pytest.mark.parametrize("operator", ["ggn", "fisher", "empirical_fisher"])
def test_gauss_newton_operators_have_no_eigenvalue_below_minus_tol(operator):
    model = tiny_cnn()
    ctx = context(model)
    cfg = probe_cfg("lanczos", n_samples=N, repeats=1, max_repeats=1, k=3, max_iters=160,
                    tol=1e-8, certify_iters=60, hutchinson_samples=4, slq_vectors=1,
                    half_check=False, operator=operator)
    r = probe.run(ctx, cfg)
    assert r["operator"] == operator
    rep = r["per_repeat"][0]
    assert min(rep["bottom"]) >= -1e-6 * rep["top"][0]
    assert r["negative_mass"] == pytest.approx(0.0, abs=1e-9)
    # the operator's own matrix (its correctness against dense Jacobians: test_operators.py)
    from losslands.curvature.operators import GGNOperator

    op = GGNOperator(model, torch.nn.CrossEntropyLoss(), ctx.probe_data(N, index=0), kind=operator)
    dense = torch.stack([op.matvec(e) for e in torch.eye(op.dim)]).double()
    eig = torch.linalg.eigvalsh((dense + dense.T) / 2)
    assert rep["top"] == pytest.approx(eig[-3:].flip(0).tolist(), rel=1e-5)
