"""HessianOperator against ``torch.func.hessian`` (float64) and the least-squares closed form."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from losslands.curvature import HessianOperator, lanczos
from losslands.curvature.operators import auto_method
from losslands.flat import flat_loss, get_flat, set_flat

METHODS = ["graph", "double_backward", "jvp"]


def _mlp_batches(sizes=(7, 3, 5), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(n, 4, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g),
        )
        for n in sizes
    ]


def _cnn_batches(sizes=(5, 2, 4), seed=0):
    g = torch.Generator().manual_seed(seed)
    return [
        (
            torch.randn(n, 2, 6, 6, generator=g, dtype=torch.float64),
            torch.randint(0, 3, (n,), generator=g),
        )
        for n in sizes
    ]


@pytest.mark.parametrize("method", METHODS)
def test_mlp_cross_entropy_matches_dense(method, tiny_mlp, dense_hessian, operator_matrix):
    model, loss_fn, data = tiny_mlp(), nn.CrossEntropyLoss(), _mlp_batches()
    expected = dense_hessian(model, loss_fn, data)
    op = HessianOperator(model, loss_fn, data, method=method)
    assert op.dim == 43 and op.dtype == torch.float64 and op.method == method
    got = operator_matrix(op)
    assert op.n_matvecs == 43
    assert torch.allclose(got, expected, atol=1e-12, rtol=1e-10)
    # the data can tell a per-sample mean from a mean of batch means
    per_batch = sum(dense_hessian(model, loss_fn, [b]) for b in data) / len(data)
    assert (per_batch - expected).abs().max() > 1e-3


@pytest.mark.parametrize("method", METHODS)
def test_batchnorm_cnn_uses_eval_stats_and_restores_mode(
    method, tiny_bn_cnn, dense_hessian, operator_matrix
):
    model, loss_fn, data = tiny_bn_cnn(), nn.CrossEntropyLoss(), _cnn_batches()
    model.train()
    model[3].eval()  # a submodule with its own mode must get it back
    expected = dense_hessian(model, loss_fn, data)
    stats = [b.clone() for b in model.buffers()]
    op = HessianOperator(model, loss_fn, data, method=method)
    probes = torch.randn(
        op.dim, 12, generator=torch.Generator().manual_seed(1), dtype=torch.float64
    )
    assert torch.allclose(operator_matrix(op, probes), expected @ probes, atol=1e-11, rtol=1e-9)
    assert [m.training for m in model.modules()] == [True, True, True, True, False, True, True]
    assert all(torch.equal(a, b) for a, b in zip(stats, model.buffers(), strict=True))
    # batch statistics (what train mode would use) give a different Hessian
    batch_stats = copy.deepcopy(model)
    batch_stats[1].running_mean = batch_stats[1].running_var = None
    assert (dense_hessian(batch_stats, loss_fn, data) - expected).abs().max() > 1e-3


def test_methods_agree_with_chunking(tiny_bn_cnn):
    model, loss_fn, data = tiny_bn_cnn(), nn.CrossEntropyLoss(), _cnn_batches()
    v = torch.randn(sum(p.numel() for p in model.parameters()), dtype=torch.float64)
    results = [
        HessianOperator(model, loss_fn, data, method=m, chunk_size=c).matvec(v)
        for m in METHODS
        for c in (None, 2)
    ]
    for r in results[1:]:
        assert torch.allclose(r, results[0], atol=1e-12, rtol=1e-10)


def test_auto_method_threshold(tiny_mlp):
    model, data = tiny_mlp(), _mlp_batches()
    assert HessianOperator(model, nn.CrossEntropyLoss(), data).method == "graph"
    op = HessianOperator(model, nn.CrossEntropyLoss(), data, graph_max_samples=10)
    assert op.method == "double_backward"
    assert auto_method(torch.device("cuda"), 10, 10_000) == "jvp"  # 4.6x faster on an H200
    assert auto_method(torch.device("cpu"), 10, 10_000) == "graph"


class _NoForwardAD(torch.autograd.Function):
    """tanh with a backward (twice differentiable through autograd) but no forward-mode rule."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


def test_auto_falls_back_to_double_backward_without_forward_ad(monkeypatch):
    """A GPU's auto method is forward-over-reverse; a model whose ops lack forward-mode AD still
    gets exact products (double backward) and a warning that says so."""
    from losslands.curvature import operators

    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.a, self.b = nn.Linear(4, 5).double(), nn.Linear(5, 3).double()

        def forward(self, x):
            return self.b(_NoForwardAD.apply(self.a(x)))

    torch.manual_seed(0)
    model, data = Net(), _mlp_batches()
    monkeypatch.setattr(operators, "auto_method", lambda *a: "jvp")
    op = HessianOperator(model, nn.CrossEntropyLoss(), data)
    assert op.method == "jvp"
    v = torch.randn(op.dim, dtype=torch.float64)
    with pytest.warns(RuntimeWarning, match="double backward"):
        hv = op.matvec(v)
    assert op.method == "double_backward"
    # reverse-over-reverse ground truth (torch.func.hessian needs the forward-mode rule)
    dense = torch.autograd.functional.hessian(flat_loss(model, nn.CrossEntropyLoss(), data), get_flat(model))
    assert torch.allclose(hv, dense @ v, atol=1e-10)
    with pytest.raises((NotImplementedError, RuntimeError)):  # an explicit method is not changed
        HessianOperator(model, nn.CrossEntropyLoss(), data, method="jvp").matvec(v)


def test_weight_decay_adds_exactly_wd_identity(tiny_mlp, dense_hessian, operator_matrix):
    model, loss_fn, data = tiny_mlp(), nn.CrossEntropyLoss(), _mlp_batches()
    wd = 0.3
    plain = HessianOperator(model, loss_fn, data)
    decayed = HessianOperator(model, loss_fn, data, weight_decay=wd)
    eye = torch.eye(plain.dim, dtype=torch.float64)
    assert torch.allclose(operator_matrix(decayed) - operator_matrix(plain), wd * eye, atol=1e-14)
    assert torch.allclose(
        operator_matrix(decayed), dense_hessian(model, loss_fn, data) + wd * eye, atol=1e-12
    )
    theta = get_flat(model)
    assert torch.allclose(decayed.gradient() - plain.gradient(), wd * theta, atol=1e-14)
    assert decayed.loss() - plain.loss() == pytest.approx(
        0.5 * wd * float(theta @ theta), rel=1e-12
    )


def test_linear_least_squares_closed_form(operator_matrix):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 6, generator=g, dtype=torch.float64) * torch.arange(1, 7)
    y = torch.randn(40, generator=g, dtype=torch.float64)
    model = nn.Linear(6, 1, bias=False).double()

    def loss_fn(out, target):
        return 0.5 * ((out.squeeze(-1) - target) ** 2).mean()

    data = [(x[:25], y[:25]), (x[25:], y[25:])]
    h = x.T @ x / 40
    w = get_flat(model)
    for method in METHODS:
        op = HessianOperator(model, loss_fn, data, method=method)
        assert torch.allclose(operator_matrix(op), h, atol=1e-12)
        assert torch.allclose(op.gradient(), x.T @ (x @ w - y) / 40, atol=1e-12)
        assert op.loss() == pytest.approx(float(0.5 * ((x @ w - y) ** 2).mean()), rel=1e-12)
    res = lanczos(HessianOperator(model, loss_fn, data), k=3)
    assert torch.allclose(res.top, torch.linalg.eigvalsh(h).flip(0)[:3], atol=1e-10)


def test_gradient_and_loss_match_autograd(tiny_bn_cnn):
    model, loss_fn, data = tiny_bn_cnn(), nn.CrossEntropyLoss(), _cnn_batches()
    model.eval()
    theta = get_flat(model).requires_grad_(True)
    loss = flat_loss(model, loss_fn, data)(theta)
    (expected,) = torch.autograd.grad(loss, theta)
    model.train()
    for method in METHODS:
        op = HessianOperator(model, loss_fn, data, method=method)
        assert torch.allclose(op.gradient(), expected, atol=1e-13)
        assert op.loss() == pytest.approx(float(loss.detach()), rel=1e-12)
    assert model.training


def test_graph_is_rebuilt_after_parameters_change(tiny_mlp, dense_hessian):
    model, loss_fn, data = tiny_mlp(), nn.CrossEntropyLoss(), _mlp_batches()
    op = HessianOperator(model, loss_fn, data, method="graph")
    v = torch.randn(op.dim, dtype=torch.float64)
    before = op.matvec(v)
    set_flat(model, get_flat(model) + 0.5)
    after = op.matvec(v)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, dense_hessian(model, loss_fn, data) @ v, atol=1e-12)


def test_graph_is_rebuilt_after_batchnorm_statistics_change(tiny_bn_cnn, dense_hessian):
    model, loss_fn, data = tiny_bn_cnn(), nn.CrossEntropyLoss(), _cnn_batches()
    op = HessianOperator(model, loss_fn, data, method="graph")
    v = torch.randn(op.dim, dtype=torch.float64)
    op.matvec(v)
    with torch.no_grad():
        model.train()(data[0][0])  # a training forward pass updates the running statistics
    assert torch.allclose(op.matvec(v), dense_hessian(model, loss_fn, data) @ v, atol=1e-12)


class _PartlyUsed(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.used = nn.Linear(3, 2)
        self.unused = nn.Linear(2, 2)

    def forward(self, x):
        return self.used(x)


def test_unused_and_frozen_parameters(dense_hessian, operator_matrix):
    torch.manual_seed(0)
    model = _PartlyUsed().double()
    model.used.bias.requires_grad_(False)
    data = _mlp_batches((6,))[0][0][:, :3], torch.tensor([0, 1, 1, 0, 1, 0])
    op = HessianOperator(model, nn.CrossEntropyLoss(), data)
    assert op.dim == 6 + 6  # frozen bias excluded; unused layer has a zero block
    assert torch.allclose(operator_matrix(op), dense_hessian(model, nn.CrossEntropyLoss(), data))


def test_validation(tiny_mlp):
    model, data = tiny_mlp(), _mlp_batches()
    with pytest.raises(ValueError, match="method"):
        HessianOperator(model, nn.CrossEntropyLoss(), data, method="exact")
    with pytest.raises(ValueError, match="weight_decay"):
        HessianOperator(model, nn.CrossEntropyLoss(), data, weight_decay=-1.0)
    with pytest.raises(ValueError, match="chunk_size"):
        HessianOperator(model, nn.CrossEntropyLoss(), data, chunk_size=0)
    with pytest.raises(ValueError, match="length 43"):
        HessianOperator(model, nn.CrossEntropyLoss(), data).matvec(torch.ones(5))
    frozen = tiny_mlp().requires_grad_(False)
    with pytest.raises(ValueError, match="no trainable"):
        HessianOperator(frozen, nn.CrossEntropyLoss(), data)


@pytest.mark.parametrize("method", ["graph", "double_backward", "jvp"])
def test_matmat_equals_matvec_per_row(method):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(5, 7), nn.Tanh(), nn.Linear(7, 3)).double()
    x, y = torch.randn(40, 5, dtype=torch.float64), torch.randint(0, 3, (40,))
    op = HessianOperator(model, nn.CrossEntropyLoss(), (x, y), method=method, chunk_size=16,
                         weight_decay=0.1)
    vs = torch.randn(4, op.dim, dtype=torch.float64)
    rows = torch.stack([op.matvec(v) for v in vs])
    assert torch.allclose(op.matmat(vs), rows, rtol=1e-10, atol=1e-12)
    assert op.n_matvecs == 8


def _gn_problem():
    torch.manual_seed(3)
    model = nn.Sequential(nn.Linear(5, 6), nn.Tanh(), nn.Linear(6, 4)).double().eval()
    x, y = torch.randn(30, 5, dtype=torch.float64), torch.randint(0, 4, (30,))
    theta = get_flat(model)

    def outputs(t):
        from losslands.flat import unflatten

        return torch.func.functional_call(model, unflatten(model, t), (x,))

    jac = torch.func.jacrev(outputs)(theta)  # N x C x D
    p = torch.softmax(outputs(theta), dim=1)
    return model, x, y, jac, p


def _sandwich(jac, middles):
    return sum(j.T @ m @ j for j, m in zip(jac, middles, strict=True)) / jac.shape[0]


@pytest.mark.parametrize("kind", ["ggn", "fisher"])
def test_ggn_and_exact_fisher_equal_the_dense_sandwich(kind):
    from losslands.curvature.operators import GGNOperator

    model, x, y, jac, p = _gn_problem()
    dense = _sandwich(jac, [torch.diag(pi) - torch.outer(pi, pi) for pi in p])
    op = GGNOperator(model, nn.CrossEntropyLoss(), (x, y), kind=kind, chunk_size=7)
    v = torch.randn(op.dim, dtype=torch.float64)
    assert torch.allclose(op.matvec(v), dense @ v, rtol=1e-10, atol=1e-12)
    assert float(torch.linalg.eigvalsh(dense)[0]) > -1e-12  # positive semidefinite


def test_empirical_and_monte_carlo_fisher_equal_their_dense_constructions():
    from losslands.curvature.operators import GGNOperator

    model, x, y, jac, p = _gn_problem()
    eye = torch.eye(4, dtype=torch.float64)
    emp = _sandwich(jac, [torch.outer(eye[t] - pi, eye[t] - pi) for t, pi in zip(y, p, strict=True)])
    op = GGNOperator(model, nn.CrossEntropyLoss(), (x, y), kind="empirical_fisher")
    v = torch.randn(op.dim, dtype=torch.float64)
    assert torch.allclose(op.matvec(v), emp @ v, rtol=1e-10, atol=1e-12)
    # the empirical Fisher is the uncentred second moment of per-sample gradients
    grads = torch.stack([j.T @ (pi - eye[t]) for j, pi, t in zip(jac, p, y, strict=True)])
    assert torch.allclose(emp, grads.T @ grads / len(grads), atol=1e-12)
    mc = GGNOperator(model, nn.CrossEntropyLoss(), (x, y), kind="fisher_mc", mc_samples=3, seed=1)
    labels = torch.cat(mc.mc_labels)
    middles = [sum(torch.outer(eye[s] - pi, eye[s] - pi) for s in row) / 3
               for row, pi in zip(labels, p, strict=True)]
    assert torch.allclose(mc.matvec(v), _sandwich(jac, middles) @ v, rtol=1e-10, atol=1e-12)


def test_restricted_is_the_diagonal_block():
    from losslands.curvature import DenseOperator
    from losslands.curvature.operators import Restricted

    a = torch.randn(9, 9, dtype=torch.float64)
    a = a + a.T
    idx = torch.tensor([1, 4, 5, 8])
    v = torch.randn(4, dtype=torch.float64)
    assert torch.allclose(Restricted(DenseOperator(a), idx).matvec(v), a[idx][:, idx] @ v)
