"""Gradient-noise statistics against per-sample gradients from a Python loop (float64)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from losslands.curvature import gradient_noise, per_sample_gradients
from losslands.curvature.noise import gram64
from losslands.curvature.operators import eval_mode


def _loop_gradients(model, loss_fn, x, y):
    params = [p for p in model.parameters() if p.requires_grad]
    rows = []
    with eval_mode(model):
        for i in range(x.shape[0]):
            grads = torch.autograd.grad(loss_fn(model(x[i : i + 1]), y[i : i + 1]), params)
            rows.append(torch.cat([g.reshape(-1) for g in grads]))
    return torch.stack(rows)


def _dense_noise(model, loss_fn, x, y, hessian):
    """lambda_c, trace_c, top noise vector, lambda_h, alignment from dense linear algebra."""
    grads = _loop_gradients(model, loss_fn, x, y)
    centred = grads - grads.mean(0)
    cov = centred.T @ centred / x.shape[0]
    c_vals, c_vecs = torch.linalg.eigh(cov)
    h_vals, h_vecs = torch.linalg.eigh(hessian)
    v_h = h_vecs[:, -1]
    return {
        "lambda_c": float(c_vals[-1]),
        "trace_c": float(torch.trace(cov)),
        "vector_c": c_vecs[:, -1],
        "lambda_h": float(h_vals[-1]),
        "along": float(v_h @ cov @ v_h),
        "grad_norm": float(grads.mean(0).norm()),
        "grads": grads,
    }


def _mlp_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 4, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def _cnn_data(n, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 2, 6, 6, generator=g, dtype=torch.float64), torch.randint(
        0, 3, (n,), generator=g
    )


def _check(res, ref, n):
    assert res.n == n
    assert res.lambda_c == pytest.approx(ref["lambda_c"], rel=1e-9)
    assert res.trace_c == pytest.approx(ref["trace_c"], rel=1e-9)
    assert res.lambda_h == pytest.approx(ref["lambda_h"], rel=1e-8)
    assert res.ratio == pytest.approx(ref["lambda_c"] / ref["lambda_h"], rel=1e-8)
    assert res.alignment == pytest.approx(ref["along"] / ref["lambda_h"], rel=1e-6)
    assert res.alignment_c == pytest.approx(ref["along"] / ref["lambda_c"], rel=1e-6)
    assert 0.0 <= res.alignment_c <= 1.0
    assert res.grad_norm == pytest.approx(ref["grad_norm"], rel=1e-10)
    assert abs(float(res.vector_c @ ref["vector_c"])) == pytest.approx(1.0, abs=1e-8)


def test_mlp_matches_dense(tiny_mlp, dense_hessian):
    model, loss_fn = tiny_mlp(), nn.CrossEntropyLoss()
    x, y = _mlp_data(12)  # n < D = 43: the Gram route is the cheap one
    ref = _dense_noise(model, loss_fn, x, y, dense_hessian(model, loss_fn, (x, y)))
    res = gradient_noise(model, loss_fn, x, y, chunk_size=5, lanczos_kwargs={"tol": 1e-10})
    _check(res, ref, 12)


def test_batchnorm_cnn_matches_dense_and_restores_mode(tiny_bn_cnn, dense_hessian):
    model, loss_fn = tiny_bn_cnn(), nn.CrossEntropyLoss()
    model.train()
    x, y = _cnn_data(9)
    ref = _dense_noise(model, loss_fn, x, y, dense_hessian(model, loss_fn, (x, y)))
    res = gradient_noise(model, loss_fn, x, y, chunk_size=4, lanczos_kwargs={"tol": 1e-10})
    _check(res, ref, 9)
    assert all(m.training for m in model.modules())


def test_more_samples_than_parameters():
    torch.manual_seed(0)
    model = nn.Linear(2, 1).double()

    def loss_fn(out, target):
        return 0.5 * ((out.squeeze(-1) - target) ** 2).mean()

    g = torch.Generator().manual_seed(1)
    x = torch.randn(50, 2, generator=g, dtype=torch.float64)
    y = torch.randn(50, generator=g, dtype=torch.float64)
    # closed form: H = E[[x,1][x,1]^T], g_i = (w.x_i + b - y_i) [x_i, 1]
    feats = torch.cat([x, torch.ones(50, 1, dtype=torch.float64)], 1)
    ref = _dense_noise(model, loss_fn, x, y, feats.T @ feats / 50)
    res = gradient_noise(model, loss_fn, x, y, chunk_size=16, lanczos_kwargs={"tol": 1e-10})
    _check(res, ref, 50)
    residual = feats @ torch.cat([model.weight.detach()[0], model.bias.detach()]) - y
    assert torch.allclose(per_sample_gradients(model, loss_fn, x, y), residual[:, None] * feats)


def test_per_sample_gradients_match_loop(tiny_bn_cnn):
    model, loss_fn = tiny_bn_cnn(), nn.CrossEntropyLoss()
    x, y = _cnn_data(7)
    got = per_sample_gradients(model, loss_fn, x, y, chunk_size=3)
    assert got.shape == (7, sum(p.numel() for p in model.parameters()))
    assert torch.allclose(got, _loop_gradients(model, loss_fn, x, y), atol=1e-13)


def test_validation(tiny_mlp):
    x, y = _mlp_data(4)
    with pytest.raises(ValueError, match="at least 2"):
        gradient_noise(tiny_mlp(), nn.CrossEntropyLoss(), x[:1], y[:1])
    with pytest.raises(ValueError, match="chunk_size"):
        per_sample_gradients(tiny_mlp(), nn.CrossEntropyLoss(), x, y, chunk_size=0)
    with pytest.raises(ValueError, match="targets"):
        per_sample_gradients(tiny_mlp(), nn.CrossEntropyLoss(), x, y[:3])


def test_gram64_is_accurate_for_float32_rows():
    rows = torch.randn(6, 100_000, generator=torch.Generator().manual_seed(0)) + 3.0
    exact = rows.double() @ rows.double().T
    assert torch.allclose(gram64(rows, block=3000), exact, rtol=1e-12, atol=0)
