"""train_in_subspace on quadratics and least squares whose subspace minimum is known exactly."""

from __future__ import annotations

from functools import partial

import pytest
import torch

from losslands.subspace import make_projection, train_in_subspace

F64 = torch.float64
KINDS = ("dense", "sparse", "fastfood")


def _gen(seed):
    return torch.Generator().manual_seed(seed)


def _quadratic(D, seed=0, cond=100.0):
    """SPD ``A`` with eigenvalues log-spaced over ``cond``, target ``t*`` and start ``theta0``."""
    g = _gen(seed)
    Q, _ = torch.linalg.qr(torch.randn(D, D, dtype=F64, generator=g))
    A = Q @ torch.diag(torch.logspace(0, torch.log10(torch.tensor(cond)), D, dtype=F64)) @ Q.T
    return A, torch.randn(D, dtype=F64, generator=g), torch.randn(D, dtype=F64, generator=g)


def _subspace_minimum(M, A, target, theta0):
    """Closed form: ``(M^T A M) z = M^T A (t* - theta0)`` and the loss there."""
    z = torch.linalg.solve(M.T @ A @ M, M.T @ A @ (target - theta0))
    r = theta0 + M @ z - target
    return z, 0.5 * r @ A @ r


@pytest.mark.parametrize("kind", KINDS)
def test_quadratic_reaches_closed_form_subspace_minimum(kind):
    D, d = 80, 12
    A, target, theta0 = _quadratic(D)
    res = train_in_subspace(
        lambda th: 0.5 * (th - target) @ A @ (th - target), theta0, d, projection=kind, seed=3
    )
    z, fmin = _subspace_minimum(res.projection.to_dense(), A, target, theta0)
    assert res.stop_reason in ("gtol", "stalled")
    torch.testing.assert_close(res.z, z, rtol=1e-6, atol=1e-7)
    assert abs(res.loss - fmin) <= 1e-10 * fmin
    torch.testing.assert_close(res.theta, theta0 + res.projection(res.z), rtol=0, atol=1e-12)
    assert res.history[0] == pytest.approx(float(0.5 * (theta0 - target) @ A @ (theta0 - target)))
    assert len(res.history) == res.steps + 1 and res.history[-1] == res.loss
    assert res.steps < 200


@pytest.mark.parametrize("scale", [1e-3, 1e3])
@pytest.mark.parametrize("kind", KINDS)
def test_defaults_are_invariant_to_the_loss_scale(kind, scale):
    D, d = 60, 10
    A, target, theta0 = _quadratic(D, seed=1, cond=1e3)

    def loss(th):
        return 0.5 * scale * (th - target) @ A @ (th - target)

    res = train_in_subspace(loss, theta0, d, projection=kind)
    z, fmin = _subspace_minimum(res.projection.to_dense(), A, target, theta0)
    torch.testing.assert_close(res.z, z, rtol=1e-6, atol=1e-7)
    assert abs(res.loss - scale * fmin) <= 1e-10 * scale * fmin


@pytest.mark.parametrize("kind", KINDS)
def test_problem_solvable_in_exactly_k_dimensions(kind):
    # loss = 0.5 ||U^T (theta - t*)||^2 with rank-k U: reachable zero iff rank(U^T P) = k.
    D, k = 90, 6
    g = _gen(4)
    U, target, theta0 = (
        torch.randn(D, k, dtype=F64, generator=g),
        torch.randn(D, dtype=F64, generator=g),
        torch.randn(D, dtype=F64, generator=g),
    )

    def loss(th):
        return 0.5 * (U.T @ (th - target)).square().sum()

    start = float(loss(theta0))
    at_k = train_in_subspace(loss, theta0, k, projection=kind, seed=1)
    assert at_k.loss <= 1e-18 * start

    below = train_in_subspace(loss, theta0, k - 1, projection=kind, seed=1)
    M = U.T @ below.projection.to_dense()
    b = U.T @ (target - theta0)
    residual = b - M @ torch.linalg.lstsq(M, b.unsqueeze(1)).solution.squeeze(1)
    expected = 0.5 * float(residual.square().sum())
    assert expected > 1e-3 * start  # clearly unreachable in k - 1 dimensions
    assert below.loss == pytest.approx(expected, rel=1e-9)


def test_float32_reaches_float32_precision():
    D, d = 60, 8
    A, target, theta0 = _quadratic(D, seed=2)
    A32, t32 = A.float(), target.float()
    res = train_in_subspace(
        lambda th: 0.5 * (th - t32) @ A32 @ (th - t32), theta0.float(), d, projection="fastfood"
    )
    assert res.z.dtype == torch.float32 and res.projection.dtype == torch.float32
    z, fmin = _subspace_minimum(res.projection.to_dense().double(), A, target, theta0)
    torch.testing.assert_close(res.z.double(), z, rtol=1e-3, atol=1e-3)
    assert res.loss == pytest.approx(float(fmin), rel=1e-5)


def _least_squares(D, d, n_batches, batch, seed):
    g = _gen(seed)
    batches = [
        (torch.randn(batch, D, dtype=F64, generator=g), torch.randn(batch, dtype=F64, generator=g))
        for _ in range(n_batches)
    ]
    theta0 = torch.randn(D, dtype=F64, generator=g)
    return batches, theta0


def _mse(th, batch):
    x, y = batch
    return 0.5 * (x @ th - y).square().mean()


def test_minibatch_sgd_follows_the_hand_computed_recursion():
    D, d, lr, steps = 30, 5, 0.05, 7
    batches, theta0 = _least_squares(D, d, n_batches=3, batch=8, seed=5)
    res = train_in_subspace(
        _mse,
        theta0,
        d,
        projection="sparse",
        batches=batches,
        steps=steps,
        optimizer=partial(torch.optim.SGD, lr=lr),
    )
    M = res.projection.to_dense()
    z, seen = torch.zeros(d, dtype=F64), []
    for k in range(steps):  # batches are used in order, cycling
        x, y = batches[k % 3]
        r = x @ (theta0 + M @ z) - y
        seen.append(0.5 * float(r.square().mean()))
        z = z - lr * M.T @ x.T @ r / len(y)
    torch.testing.assert_close(res.z, z, rtol=1e-12, atol=1e-12)
    assert res.history == pytest.approx(seen, rel=1e-12)
    final = sum(float(_mse(theta0 + M @ z, b)) for b in batches) / 3
    assert res.loss == pytest.approx(final, rel=1e-12)
    assert res.steps == steps and res.stop_reason == "steps"


def test_optimizer_class_gets_lr():
    D, d = 30, 4
    batches, theta0 = _least_squares(D, d, n_batches=1, batch=16, seed=6)
    a = train_in_subspace(
        _mse, theta0, d, batches=batches, steps=3, optimizer=torch.optim.SGD, lr=0.1
    )
    b = train_in_subspace(
        _mse,
        theta0,
        d,
        batches=batches,
        steps=3,
        optimizer=partial(torch.optim.SGD, lr=0.5),
        lr=0.1,
    )
    torch.testing.assert_close(a.z, b.z, rtol=0, atol=0)


@pytest.mark.parametrize("scale", [1e-3, 1e3])
def test_default_adam_with_batches_approaches_a_consistent_minimum(scale):
    # Every batch is minimised by the same point of the subspace, so constant-step Adam
    # gets close to it; with lr=1e-3 the error is of the order of lr.
    D, d = 40, 4
    g = _gen(7)
    theta0 = torch.randn(D, dtype=F64, generator=g)
    P = make_projection("dense", D, d, seed=0, dtype=F64)
    z_true = torch.tensor([0.5, -0.3, 0.2, 0.4], dtype=F64)
    xs = [torch.randn(10, D, dtype=F64, generator=g) for _ in range(4)]
    batches = [(x, x @ (theta0 + P(z_true))) for x in xs]
    res = train_in_subspace(
        lambda th, b: scale * _mse(th, b), theta0, d, projection=P, batches=batches, steps=2000
    )
    assert (res.z - z_true).abs().max() < 2e-2
    assert res.loss < 1e-3 * res.history[0]


def test_callback_and_progress():
    A, target, theta0 = _quadratic(20, seed=8)
    seen = []
    res = train_in_subspace(
        lambda th: 0.5 * (th - target) @ A @ (th - target),
        theta0,
        5,
        progress=lambda k, n, f: seen.append((k, n)),
        callback=lambda k, z, f: k == 3,
    )
    assert res.stop_reason == "callback" and res.steps == 3
    assert seen == [(k, 1000) for k in range(4)]
    assert len(res.history) == 4


def test_reuses_a_projection_and_checks_it():
    A, target, theta0 = _quadratic(20, seed=9)

    def loss(th):
        return 0.5 * (th - target) @ A @ (th - target)

    P = make_projection("sparse", 20, 5, seed=11, dtype=F64)
    assert train_in_subspace(loss, theta0, 5, projection=P).projection is P
    with pytest.raises(ValueError, match="make_projection"):
        train_in_subspace(loss, theta0, 4, projection=P)


def test_bad_arguments():
    theta0 = torch.zeros(10, dtype=F64)
    with pytest.raises(ValueError, match="re-iterable"):
        train_in_subspace(_mse, theta0, 2, batches=iter([(torch.zeros(1, 10), torch.zeros(1))]))
    with pytest.raises(ValueError, match="fastfood"):
        train_in_subspace(lambda th: th.sum(), theta0, 5, max_dense_bytes=10)
    with pytest.raises(ValueError, match="1-D"):
        train_in_subspace(lambda th: th.sum(), theta0.reshape(2, 5), 2)


def test_linear_model_through_flat_loss_matches_least_squares():
    from torch import nn

    from losslands.flat import flat_loss, get_flat

    g = _gen(12)
    model = nn.Linear(7, 1).double()
    x = torch.randn(50, 7, dtype=F64, generator=g)
    y = torch.randn(50, 1, dtype=F64, generator=g)
    theta0 = get_flat(model)  # [weight (7), bias (1)]
    res = train_in_subspace(
        flat_loss(model, nn.MSELoss(), (x, y)), theta0, 3, projection="fastfood"
    )
    design = torch.cat([x, torch.ones(50, 1, dtype=F64)], dim=1)
    A = design @ res.projection.to_dense()
    z = torch.linalg.lstsq(A, y - (design @ theta0).unsqueeze(1)).solution.squeeze(1)
    torch.testing.assert_close(res.z, z, rtol=1e-6, atol=1e-8)
    residual = design @ (theta0 + res.projection(z)) - y.squeeze(1)
    assert res.loss == pytest.approx(float(residual.square().mean()), rel=1e-10)
