"""probe=perturbation: exact finite differences on polynomials, dense Hessians on a tiny CNN."""

from __future__ import annotations

import copy
import dataclasses
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from losslands.directions import filter_normalized_direction
from losslands.flat import flat_loss, get_flat, set_flat
from losslands.probes import perturbation as probe
from tests.conftest import assert_probe_outputs, run_probe_cli
from tests.probes.tiny_curvature import assert_refused, context, dense_hessian, probe_cfg, tiny_cnn

pytestmark = pytest.mark.usefixtures("one_thread")
N = 100
MAGNITUDES = probe.eps_magnitudes(1e-3, 1.0, 13)


def test_grid_is_symmetric_log_spaced_and_holds_zero():
    grid = probe.symmetric_grid(MAGNITUDES)
    assert len(grid) == 27 and grid[13] == 0.0
    assert grid[14] == pytest.approx(1e-3) and grid[-1] == pytest.approx(1.0)
    assert all(grid[13 + j] == -grid[13 - j] for j in range(14))
    ratios = [b / a for a, b in zip(MAGNITUDES, MAGNITUDES[1:], strict=False)]
    assert ratios == pytest.approx([10**0.25] * 12)
    with pytest.raises(ValueError, match="probe.eps_min"):
        probe.eps_magnitudes(1.0, 1e-3, 13)


def test_central_difference_is_exact_on_a_quadratic():
    def f(x):
        return 3.5 * x**2 - 2.0 * x + 0.7

    for eps in MAGNITUDES:
        assert probe.fd_curvature(f, eps) == pytest.approx(7.0, rel=1e-9)


def test_central_difference_error_on_a_quartic_is_the_eps_squared_term():
    # f = x^2 + x^4: f(e) + f(-e) - 2 f(0) = 2 e^2 + 2 e^4, so the estimate is 2 + 2 e^2.
    def f(x):
        return x**2 + x**4

    for eps in MAGNITUDES:
        assert probe.fd_curvature(f, eps) == pytest.approx(2.0 + 2.0 * eps**2, rel=1e-9)
    assert probe.fd_curvature(f, 1.0) == pytest.approx(4.0)


@pytest.fixture(scope="module")
def outcome(one_thread):
    model = tiny_cnn()
    ctx = context(model)
    cfg = probe_cfg("perturbation", n_samples=N, max_iters=150, tol=1e-8)
    x, y = ctx.probe_data(N, index=0)
    return SimpleNamespace(
        model=model,
        ctx=ctx,
        cfg=cfg,
        x=x,
        y=y,
        result=probe.run(ctx, cfg),
        hessian=dense_hessian(model, x, y),
    )


def test_small_step_curvature_matches_the_dense_top_eigenvalue(outcome):
    r = outcome.result
    top = float(torch.linalg.eigvalsh(outcome.hessian)[-1])
    assert r["lambda_top"] == pytest.approx(top, rel=1e-5)
    assert r["fd_curvature_small"] == pytest.approx(top, rel=1e-4)
    assert r["rel_error_small"] == pytest.approx(
        abs(r["fd_curvature_small"] - r["lambda_top"]) / r["lambda_top"]
    )
    assert r["rel_error_small"] < 1e-4
    assert len(r["eps"]) == len(r["loss_top"]) == 27 and len(r["curvature_top"]) == 13
    assert abs(r["fd_curvature_large"] - top) > 1e-3 * top  # the quadratic model fails at eps=1


def test_losses_are_the_model_loss_at_the_shifted_weights(outcome):
    r = outcome.result
    model = copy.deepcopy(outcome.model).double().eval()
    theta = get_flat(model)
    with torch.no_grad():
        assert r["loss_top"][13] == pytest.approx(
            float(nn.functional.cross_entropy(model(outcome.x.double()), outcome.y)), rel=1e-12
        )
    assert r["loss_range"] == pytest.approx(max(r["loss_top"]) - min(r["loss_top"]))
    # Along the random direction at eps = -1: rebuild d and evaluate the model directly.
    d = filter_normalized_direction(outcome.model, torch.Generator().manual_seed(0)).double()
    set_flat(model, theta - d / d.norm())
    with torch.no_grad():
        direct = float(nn.functional.cross_entropy(model(outcome.x.double()), outcome.y))
    assert r["loss_random"][0] == pytest.approx(direct, rel=1e-9)


def test_random_curvature_is_the_rayleigh_quotient(outcome):
    d = filter_normalized_direction(outcome.model, torch.Generator().manual_seed(0)).double()
    rq = float(d @ outcome.hessian @ d / (d @ d))
    r = outcome.result
    assert r["random_rayleigh"] == pytest.approx(rq, rel=1e-4)
    assert r["random_curvature_small"] == pytest.approx(rq, rel=1e-3)
    assert r["random_direction_norm"] == pytest.approx(1.0)
    assert r["random_filter_norm"] == pytest.approx(float(d.norm()), rel=1e-6)


def test_filter_scale_keeps_li_et_al_length_and_per_unit_curvature(outcome):
    cfg = dataclasses.replace(outcome.cfg, random_scale="filter")
    r = probe.run(outcome.ctx, cfg)
    assert r["random_direction_norm"] == pytest.approx(
        outcome.result["random_filter_norm"], rel=1e-6
    )
    assert r["random_curvature_small"] == pytest.approx(outcome.result["random_rayleigh"], rel=1e-3)


def test_scalars_plot_tables(outcome):
    s = probe.scalars(outcome.result)
    assert set(s) == {
        "lambda_top",
        "fd_curvature_small",
        "fd_curvature_large",
        "loss_range",
        "random_curvature_small",
        "rel_error_small",
    }
    assert len(probe.plot(outcome.result).axes) == 2
    t = probe.tables(outcome.result)
    assert len(t["loss"][1]) == 27 and len(t["curvature"][1]) == 13


@pytest.mark.parametrize(
    ("key", "value"),
    [("random_scale", "gauss"), ("loss_dtype", "half"), ("n_samples", 0), ("eps_min", 0.0)],
)
def test_bad_settings_name_the_key(key, value):
    assert_refused(probe, {"n_samples": 10, key: value}, f"probe.{key}")


def test_cli_writes_json_and_figure(tmp_path):
    job = run_probe_cli(tmp_path, "perturbation", "probe.n_samples=64", "probe.max_iters=20")
    scalars = {"lambda_top", "fd_curvature_small", "rel_error_small"}
    record = assert_probe_outputs(job, "perturbation", scalars, exact=False)
    assert len(record["result"]["eps"]) == 27


def _squared_error(out, y):
    # distinct class weights: otherwise every Hessian eigenvalue would be 10-fold degenerate
    w = torch.linspace(1.0, 2.0, 10, dtype=out.dtype)
    return 0.5 * (w * (out - nn.functional.one_hot(y, 10).to(out.dtype)).pow(2)).sum(1).mean()


def test_exact_on_a_quadratic_loss_at_every_step():
    """Linear model + squared error: the loss is quadratic in the weights, so along the unit top
    eigenvector v, L(eps) = L0 + eps g.v + lambda eps^2 / 2 exactly (v, g, lambda from the dense
    float64 Hessian and gradient), and the curvature is lambda at every step size."""
    model = tiny_cnn(convex=True)
    ctx = context(model)
    ctx.loss_fn = _squared_error
    cfg = probe_cfg("perturbation", n_samples=N, max_iters=130, tol=1e-10, chunk_size=None)
    r = probe.run(ctx, cfg)
    x, y = ctx.probe_data(N, index=0)
    ref = copy.deepcopy(model).double().eval()
    f = flat_loss(ref, _squared_error, (x.double(), y))
    theta = get_flat(ref)
    evals, evecs = torch.linalg.eigh(torch.func.hessian(f)(theta))
    lam, v = float(evals[-1]), evecs[:, -1]
    assert evals[-1] - evals[-2] > 1e-3 * lam  # a simple top eigenvalue: v is defined up to sign
    gv = float(torch.func.grad(f)(theta) @ v)
    eps = torch.tensor(r["eps"], dtype=torch.float64)
    base = float(f(theta)) + 0.5 * lam * eps**2
    got = torch.tensor(r["loss_top"], dtype=torch.float64)
    err = min(float((got - (base + sign * gv * eps)).abs().max()) for sign in (1, -1))
    assert err < 1e-5 * float(got.max() - got.min())
    assert r["lambda_top"] == pytest.approx(lam, rel=1e-6)
    assert r["curvature_top"] == pytest.approx([lam] * len(r["curvature_top"]), rel=1e-6)


@pytest.mark.parametrize(("module", "call"), [("noise", "gradient_noise"), ("perturbation", None)])
def test_only_the_top_pair_holds_up_the_stopping_test(module, call, monkeypatch):
    """The bottom end of a network Hessian is clustered: waiting for it would waste matvecs."""
    import importlib

    from losslands.curvature import lanczos as real_lanczos

    target = importlib.import_module(
        "losslands.curvature.noise" if module == "noise" else "losslands.probes.perturbation"
    )
    seen = []

    def spy(op, k, **kw):
        seen.append(kw.get("which", "both"))
        return real_lanczos(op, k, **kw)

    monkeypatch.setattr(target, "lanczos", spy)
    model = tiny_cnn()
    ctx = context(model)
    if module == "noise":
        from losslands.curvature import gradient_noise

        gradient_noise(model, nn.CrossEntropyLoss(), *ctx.probe_data(20), chunk_size=10)
    else:
        probe.run(ctx, probe_cfg("perturbation", n_samples=20, max_iters=20, tol=1e-3))
    assert seen == ["top"]


def test_block_and_gauss_newton_directions(outcome):
    """probe.block follows the top eigenvector of one layer's diagonal block (zero elsewhere);
    probe.operator=ggn that of the Gauss-Newton matrix; the second difference then measures
    v^T H v, reported beside lambda_top."""
    from losslands.flat import block_indices

    x, y = outcome.ctx.probe_data(N, index=0)
    idx = block_indices(outcome.model, "layer")["5"]
    block = outcome.hessian[idx][:, idx]
    cfg = dataclasses.replace(outcome.cfg, block="5.*")
    r = probe.run(outcome.ctx, cfg)
    assert r["lambda_top"] == pytest.approx(float(torch.linalg.eigvalsh(block)[-1]), rel=1e-6)
    assert r["hessian_curvature_top"] == pytest.approx(r["lambda_top"], rel=1e-6)  # a diagonal block
    assert r["curvature_top"][0] == pytest.approx(r["hessian_curvature_top"], rel=5e-3)
    ggn = probe.run(outcome.ctx, dataclasses.replace(outcome.cfg, operator="ggn"))
    assert ggn["operator"] == "ggn" and ggn["lambda_top"] > 0
    assert ggn["curvature_top"][0] == pytest.approx(ggn["hessian_curvature_top"], rel=5e-2)
