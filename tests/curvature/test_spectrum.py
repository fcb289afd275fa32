"""spectrum(): extremes, certification, deflated trace and density against dense float64 truth."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from losslands.curvature import DenseOperator, HessianOperator, hutchinson_trace
from losslands.curvature.spectrum import Deflated, spectrum
from losslands.flat import flat_loss, get_flat


def _sym(eigs: torch.Tensor, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(len(eigs), len(eigs), generator=g, dtype=torch.float64))
    a = q @ torch.diag(eigs) @ q.T
    return (a + a.T) / 2


def _outliers(dim: int = 300) -> torch.Tensor:
    g = torch.Generator().manual_seed(1)
    bulk = torch.randn(dim - 8, generator=g, dtype=torch.float64) * 0.05
    return torch.cat([torch.tensor([40.0, 30.0, 22.0, 15.0, -6.0, -4.0, -3.0, -2.5], dtype=torch.float64), bulk])


def test_extremes_trace_and_accounting_match_the_dense_truth():
    eigs = _outliers()
    op = DenseOperator(_sym(eigs))
    res = spectrum(op, 4, max_iters=120, tol=1e-10, trace_samples=20, slq_vectors=2, slq_iters=20)
    truth = eigs.sort().values
    assert res.top == pytest.approx(truth[-4:].flip(0).tolist(), abs=1e-8)
    assert res.bottom == pytest.approx(truth[:4].tolist(), abs=1e-8)
    assert all(res.top_certified) and all(res.bottom_certified)
    assert res.converged and res.deflated == 8
    assert res.trace_exact_part == pytest.approx(float(truth[-4:].sum() + truth[:4].sum()), abs=1e-7)
    # the deflated samples estimate the bulk's trace; the estimate is within 4 standard errors
    assert abs(res.trace - float(eigs.sum())) < 4 * res.trace_stderr
    # 1 (extremes' run) + 1 (certification) + 20 (extra) + 2 (SLQ probes) samples
    assert len(res.trace_samples) == 24
    assert sum(res.matvecs.values()) == op.n_matvecs
    assert res.matvecs["trace"] == 20 and res.matvecs["density"] == 2 * 20
    # the density's weights sum to 1 in expectation; point masses 1/dim at the outliers
    assert sum(res.weights) == pytest.approx(1.0, abs=0.1)
    assert res.negative_mass == pytest.approx(float((eigs < -1e-4 * 40).double().mean()), abs=0.15)


def test_deflation_cuts_the_trace_variance():
    """With most of the Frobenius mass in outliers, the deflated samples vary far less."""
    eigs = _outliers()
    op = DenseOperator(_sym(eigs))
    res = spectrum(op, 4, max_iters=120, tol=1e-10, trace_samples=40)
    plain = hutchinson_trace(op, n_samples=40, seed=3)
    deflated_var = torch.tensor(res.trace_samples).var()
    assert float(plain.samples.var() / deflated_var) > 100
    # exact variance of Rademacher Hutchinson: 2 (|A|_F^2 - sum a_ii^2); the deflated one is 2|PAP|_F^2-ish
    assert res.trace_stderr < plain.stderr / 10


@pytest.mark.parametrize("end", ["top", "bottom"])
def test_an_exact_double_eigenvalue_is_not_certified_twice_wrong(end):
    """One start vector sees a double eigenvalue once: Lanczos reports the next value as the
    second; the deflated restart finds the missing copy, so that second value is not certified."""
    eigs = torch.linspace(-1.0, 1.0, 400, dtype=torch.float64)
    sign = 1.0 if end == "top" else -1.0
    eigs[:3] = sign * torch.tensor([5.0, 5.0, 3.0], dtype=torch.float64)
    eigs[3:6] = -sign * torch.tensor([5.0, 4.0, 3.5], dtype=torch.float64)  # a simple other end
    res = spectrum(DenseOperator(_sym(eigs)), 2, max_iters=100, tol=1e-8, certify_iters=40)
    values = res.top if end == "top" else res.bottom
    certified = res.top_certified if end == "top" else res.bottom_certified
    other = res.bottom_certified if end == "top" else res.top_certified
    assert [abs(v) for v in values] == pytest.approx([5.0, 3.0], abs=1e-6)  # the copy is missed
    assert certified == [True, False] and other == [True, True]


def test_a_tight_cluster_is_only_certified_where_it_is_resolved():
    eigs = torch.cat([torch.tensor([10.0, 9.999, 9.998, 9.997], dtype=torch.float64),
                      torch.linspace(-1, 1, 196, dtype=torch.float64)])
    # 12 steps: three Ritz values inside the cluster, the fourth down in the bulk (a member of
    # the cluster missed while the run stopped)
    res = spectrum(DenseOperator(_sym(eigs, seed=2)), 4, max_iters=12, tol=1e-12, certify_iters=40)
    truth = sorted(eigs.tolist(), reverse=True)[:4]
    assert res.top[3] < 5 and res.top_certified == [True, True, True, False]
    for value, bound, true in zip(res.top[:3], res.top_bounds[:3], truth, strict=False):
        assert abs(value - true) <= bound  # a certified value is its rank's eigenvalue within its bound


def test_logistic_regression_has_no_negative_mass_only_a_null_space():
    """Multinomial logistic regression: the Hessian is PSD with an exact null space (the
    logit-shift invariance). negative_mass ~ 0; near_zero_mass ~ the null fraction."""
    torch.manual_seed(0)
    model = nn.Linear(6, 5).double()
    x, y = torch.randn(200, 6, dtype=torch.float64), torch.randint(0, 5, (200,))
    op = HessianOperator(model, nn.CrossEntropyLoss(), (x, y))
    res = spectrum(op, 3, max_iters=35, tol=1e-10, trace_samples=5, slq_vectors=3, slq_iters=35)
    dense = torch.func.hessian(flat_loss(model, nn.CrossEntropyLoss(), (x, y)))(get_flat(model))
    truth = torch.linalg.eigvalsh(dense)
    null = float((truth.abs() <= 1e-4 * truth.abs().max()).double().mean())
    assert null == pytest.approx(7 / 35)  # one shift direction per input weight column + bias
    assert res.negative_mass == pytest.approx(0.0, abs=1e-12)
    assert res.near_zero_mass == pytest.approx(null, abs=0.08)
    assert res.top[0] == pytest.approx(float(truth[-1]), rel=1e-8)


def test_deflated_operator_is_the_projection_sandwich():
    a = _sym(torch.linspace(-2, 3, 20, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(20, 3, dtype=torch.float64))
    dop = Deflated(DenseOperator(a), v.T)
    p = torch.eye(20, dtype=torch.float64) - v @ v.T
    x = torch.randn(20, dtype=torch.float64)
    assert torch.allclose(dop.matvec(x), p @ a @ p @ x, atol=1e-12)
    assert math.isclose(float(torch.trace(v.T @ a @ v) + torch.trace(p @ a @ p)), float(torch.trace(a)), abs_tol=1e-10)


def test_batched_trace_samples_equal_single_ones():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 8), nn.Tanh(), nn.Linear(8, 4)).double()
    x, y = torch.randn(50, 6, dtype=torch.float64), torch.randint(0, 4, (50,))
    single = spectrum(HessianOperator(model, nn.CrossEntropyLoss(), (x, y)), 2, max_iters=40,
                      tol=1e-8, trace_samples=7)
    batched = spectrum(HessianOperator(model, nn.CrossEntropyLoss(), (x, y)), 2, max_iters=40,
                       tol=1e-8, trace_samples=7, batch=3)
    assert batched.trace_samples == pytest.approx(single.trace_samples, rel=1e-10)
    assert batched.matvecs == single.matvecs
