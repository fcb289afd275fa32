"""Gradient-noise covariance and its alignment with the Hessian.

Jastrzebski et al. (2018), "Three Factors Influencing Minima in SGD"; Zhu et al. (2019), "The
Anisotropic Noise in Stochastic Gradient Descent"; Thomas et al. (2020), "On the Interplay
between Noise and Curvature and its Effect on Optimization and Generalization". Per-sample
gradients come from ``torch.func`` (``vmap`` of ``grad`` over ``functional_call``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn
from torch.func import functional_call, grad, vmap

from losslands.curvature.lanczos import lanczos
from losslands.curvature.operators import HessianOperator, eval_mode
from losslands.flat import trainable


def per_sample_gradients(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    *,
    chunk_size: int = 64,
) -> Tensor:
    """Flat gradients of each sample's loss, as rows of an ``n x D`` matrix (model dtype).

    The model runs in eval mode (restored afterwards): BatchNorm uses its running statistics,
    which is also what makes it valid under ``vmap`` (train-mode BatchNorm would mix samples).
    ``chunk_size`` samples are vmapped at a time, so activation memory is bounded; the result
    itself takes ``n * D`` entries.

    Args:
        model: The network.
        loss_fn: ``loss_fn(outputs, targets)`` returning the batch mean; called with batches
            of one sample.
        inputs: ``n`` inputs, batched along dim 0.
        targets: ``n`` targets.
        chunk_size: Samples per vmapped chunk.

    Raises:
        ValueError: Mismatched lengths, no samples or a non-positive ``chunk_size``.
    """
    n = int(inputs.shape[0])
    if n == 0 or int(targets.shape[0]) != n:
        raise ValueError(f"need as many targets as inputs (>0), got {n} and {targets.shape[0]}")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be a positive integer")
    named = trainable(model)
    params = {name: p.detach() for name, p in named}
    first = named[0][1]

    def sample_loss(p: dict[str, Tensor], x: Tensor, y: Tensor) -> Tensor:
        return loss_fn(functional_call(model, p, (x.unsqueeze(0),)), y.unsqueeze(0))

    per_sample = vmap(grad(sample_loss), in_dims=(None, 0, 0))
    out = torch.empty(
        n, sum(p.numel() for p in params.values()), dtype=first.dtype, device=first.device
    )
    with eval_mode(model):
        for i in range(0, n, chunk_size):
            x = inputs[i : i + chunk_size].to(first.device)
            y = targets[i : i + chunk_size].to(first.device)
            g = per_sample(params, x, y)
            out[i : i + x.shape[0]] = torch.cat(
                [g[name].reshape(x.shape[0], -1) for name, _ in named], 1
            )
    return out


def gram64(rows: Tensor, block: int = 8192) -> Tensor:
    """``rows @ rows.T`` accumulated in float64, ``block`` columns at a time.

    Float32 sums over ~1e5 columns lose about four digits; converting all of ``rows`` to float64
    at once would double the largest allocation.
    """
    out = torch.zeros(rows.shape[0], rows.shape[0], dtype=torch.float64, device=rows.device)
    for j in range(0, rows.shape[1], block):
        part = rows[:, j : j + block].double()
        out += part @ part.T
    return out


@dataclass
class GradientNoise:
    """Result of :func:`gradient_noise` (see its docstring for the definitions).

    Attributes:
        lambda_c: Top eigenvalue of the centred per-sample covariance ``C``.
        lambda_h: Top eigenvalue of the Hessian of the mean loss on the same samples.
        ratio: ``lambda_c / lambda_h``.
        alignment: ``v_H^T C v_H / lambda_h``.
        alignment_c: ``v_H^T C v_H / lambda_c``, in ``[0, 1]``.
        trace_c: ``tr(C)``.
        n: Number of samples.
        grad_norm: Norm of the mean gradient.
        vector_c: Unit top eigenvector of ``C`` (model dtype).
        vector_h: Unit top eigenvector of the Hessian.
        lambda_h_residual: ``|H v_H - lambda_h v_H|`` (true residual unless the Lanczos kwargs
            turn ``true_residuals`` off).
        lambda_h_converged: Whether Lanczos met its tolerance on the top pair.
    """

    lambda_c: float
    lambda_h: float
    ratio: float
    alignment: float
    alignment_c: float
    trace_c: float
    n: int
    grad_norm: float
    vector_c: Tensor
    vector_h: Tensor
    lambda_h_residual: float = float("nan")
    lambda_h_converged: bool = True


def gradient_noise(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    inputs: Tensor,
    targets: Tensor,
    *,
    chunk_size: int = 64,
    lanczos_kwargs: dict[str, Any] | None = None,
    hessian_kwargs: dict[str, Any] | None = None,
) -> GradientNoise:
    """Compare the gradient-noise covariance with the Hessian on the same ``n`` samples.

    Definitions (``g_i`` the gradient of sample ``i``'s loss, ``gbar`` their mean):

    - ``C = (1/n) sum_i (g_i - gbar)(g_i - gbar)^T``: the centred per-sample covariance (as in
      Zhu et al. 2019). The uncentred second moment is ``C + gbar gbar^T`` (Thomas et al. 2020
      use it near minima, where the two agree). The noise of an SGD mini-batch of size ``B``
      drawn with replacement has covariance ``C / B`` (Jastrzebski et al. 2018), so ``ratio``
      here is per sample: divide ``lambda_c`` by ``B`` for a given batch size.
    - ``lambda_c`` is computed exactly from the ``n x n`` Gram matrix ``K = G_c G_c^T / n`` of
      centred gradients, which has the same non-zero spectrum as ``C``; its top eigenvector
      ``a`` maps to ``u = G_c^T a / sqrt(n lambda_c)``. As an estimate of the population
      covariance's top eigenvalue it is biased upward when ``n`` is small relative to the rank,
      by roughly ``tr(C) / n``.
    - ``lambda_h, v_H``: top eigenpair of the Hessian of the mean loss over these samples
      (:class:`HessianOperator` + :func:`lanczos`, ``k=1``).
    - ``alignment = v_H^T C v_H / lambda_h`` (noise variance along the sharpest direction in
      units of its curvature) and ``alignment_c = v_H^T C v_H / lambda_c`` (the fraction of the
      top noise variance found along the sharpest direction).

    Args:
        model: The network (run in eval mode; its mode is restored).
        loss_fn: Batch-mean loss, e.g. ``nn.CrossEntropyLoss()``.
        inputs: ``n`` inputs.
        targets: ``n`` targets.
        chunk_size: Samples per vmapped chunk (and per Hessian chunk).
        lanczos_kwargs: Extra arguments for :func:`lanczos` (``k`` is fixed at 1).
        hessian_kwargs: Extra arguments for :class:`HessianOperator`.

    Returns:
        A :class:`GradientNoise`; ratios with a zero denominator are NaN.

    Raises:
        ValueError: Fewer than two samples (``C`` would be zero).
    """
    if int(inputs.shape[0]) < 2:
        raise ValueError(f"need at least 2 samples for a covariance, got {int(inputs.shape[0])}")
    grads = per_sample_gradients(model, loss_fn, inputs, targets, chunk_size=chunk_size)
    n = grads.shape[0]
    mean = grads.mean(0)
    grads -= mean  # centre in place: the n x D matrix is the big allocation
    gram = gram64(grads) / n
    eigvals, eigvecs = torch.linalg.eigh(gram)
    lambda_c = float(eigvals[-1])
    vector_c = grads.T @ eigvecs[:, -1].to(grads.dtype)
    vector_c /= vector_c.norm()

    op = HessianOperator(
        model, loss_fn, (inputs, targets), **{"chunk_size": chunk_size, **(hessian_kwargs or {})}
    )
    # only the top pair is used: the (clustered) bottom end must not hold up the stopping test
    eig = lanczos(op, 1, **{"which": "top", **(lanczos_kwargs or {})})
    lambda_h = float(eig.top[0])
    vector_h = eig.top_vectors[0]
    along = float((grads @ vector_h).double().pow(2).sum()) / n
    return GradientNoise(
        lambda_c=lambda_c,
        lambda_h=lambda_h,
        ratio=_ratio(lambda_c, lambda_h),
        alignment=_ratio(along, lambda_h),
        alignment_c=_ratio(along, lambda_c),
        trace_c=float(gram.trace()),
        n=n,
        grad_norm=float(mean.norm()),
        vector_c=vector_c,
        vector_h=vector_h,
        lambda_h_residual=float(eig.top_residuals[0]),
        lambda_h_converged=eig.converged,
    )


def _ratio(a: float, b: float) -> float:
    return a / b if b != 0 else float("nan")
