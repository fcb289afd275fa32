"""Ground-truth builders for the curvature tests: known spectra, tiny models, dense Hessians."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from losslands.flat import flat_loss, get_flat


def _spectral_matrix(eigenvalues, seed: int = 0, dtype=torch.float64):
    """``Q diag(eigenvalues) Q^T`` with a random orthogonal ``Q``; returns ``(A, Q)``."""
    eig = torch.as_tensor(eigenvalues, dtype=torch.float64)
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(len(eig), len(eig), generator=g, dtype=torch.float64))
    q = q * torch.sign(torch.diagonal(r))
    a = (q * eig) @ q.T
    return ((a + a.T) / 2).to(dtype), q.to(dtype)


def _tiny_mlp(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 5), nn.Tanh(), nn.Linear(5, 3)).double()


def _tiny_bn_cnn(seed: int = 0) -> nn.Module:
    """Conv - BatchNorm - ReLU - Dropout - Linear with non-trivial running statistics."""
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(2, 3, 3),
        nn.BatchNorm2d(3),
        nn.Softplus(),
        nn.Dropout(0.5),
        nn.Flatten(),
        nn.Linear(3 * 4 * 4, 3),
    ).double()
    bn = model[1]
    with torch.no_grad():
        bn.running_mean.copy_(torch.randn(3, dtype=torch.float64))
        bn.running_var.copy_(torch.rand(3, dtype=torch.float64) + 0.5)
        bn.weight.copy_(torch.rand(3, dtype=torch.float64) + 0.5)
        bn.bias.copy_(torch.randn(3, dtype=torch.float64))
    return model


def _dense_hessian(model: nn.Module, loss_fn, data) -> torch.Tensor:
    """``torch.func.hessian`` of the sample-weighted mean loss, on an eval-mode copy."""
    ref = copy.deepcopy(model).eval()
    return torch.func.hessian(flat_loss(ref, loss_fn, data))(get_flat(ref))


def _operator_matrix(op, columns: torch.Tensor | None = None) -> torch.Tensor:
    """``A @ columns`` by matvecs; the whole matrix when ``columns`` is None."""
    columns = torch.eye(op.dim, dtype=op.dtype) if columns is None else columns
    return torch.stack([op.matvec(c) for c in columns.T], 1)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors: a thread pool only adds contention on a shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def spectral_matrix():
    return _spectral_matrix


@pytest.fixture
def tiny_mlp():
    return _tiny_mlp


@pytest.fixture
def tiny_bn_cnn():
    return _tiny_bn_cnn


@pytest.fixture
def dense_hessian():
    return _dense_hessian


@pytest.fixture
def operator_matrix():
    return _operator_matrix
