"""Shared plumbing for the path methods: the progress-callback type and mini-batch streams.

Progress callbacks are called as ``progress(done, total, info)`` with ``info`` a dict of floats.

Convention: a stochastic loss is ``loss_fn(theta, batch)`` with ``batch`` an opaque object drawn
from ``batches``, an iterable of batches (a list, a DataLoader, or an endless generator). With
``batches=None`` the loss is deterministic and called as ``loss_fn(theta)``.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

from losslands.curvature.lanczos import lanczos
from losslands.curvature.operators import FlatHessian

Progress = Callable[[int, int, dict[str, float]], None]


def step_losses(
    loss_fn: Callable[..., Tensor], batches: Iterable[Any] | None
) -> Iterator[Callable[[Tensor], Tensor]]:
    """Endless stream of per-step losses ``theta -> loss_fn(theta, batch)``.

    Re-iterable ``batches`` (lists, DataLoaders) are cycled through epoch after epoch; a one-shot
    iterator that runs out raises a ValueError.
    """
    if batches is None:
        while True:
            yield loss_fn
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield _bind(loss_fn, batch)
        if empty:
            raise ValueError(
                "batches ran out (or is empty): pass a re-iterable (list, DataLoader) or an endless generator"
            )


def _bind(loss_fn: Callable[..., Tensor], batch: Any) -> Callable[[Tensor], Tensor]:
    return lambda theta: loss_fn(theta, batch)


def resolve_eval_loss(
    loss_fn: Callable[..., Tensor],
    batches: Iterable[Any] | None,
    eval_loss: Callable[[Tensor], Tensor] | None,
) -> Callable[[Tensor], Tensor]:
    """The fixed loss used for evaluation: ``eval_loss`` if given, else ``loss_fn`` itself when it is
    deterministic, else the mean of ``loss_fn`` over a finite list or tuple of batches."""
    if eval_loss is not None:
        return eval_loss
    if batches is None:
        return loss_fn
    if isinstance(batches, Sequence) and len(batches) > 0:
        fixed = list(batches)

        def mean_loss(theta: Tensor) -> Tensor:
            return sum(loss_fn(theta, b) for b in fixed) / len(fixed)

        return mean_loss
    raise ValueError(
        "cannot evaluate on an iterator of batches: pass eval_loss=f(theta) "
        "(e.g. losslands.flat.flat_loss over a fixed evaluation set) or batches as a list"
    )


def top_curvature(loss: Callable[[Tensor], Tensor], theta: Tensor, *, iters: int = 20) -> float:
    """Largest ``|eigenvalue|`` of the Hessian of ``loss`` at ``theta``, by ``iters`` Lanczos steps.

    Both ends of the spectrum are watched, so a most-negative eigenvalue of largest magnitude is
    found too. The start vector is seeded, so the estimate is deterministic; with fewer steps
    than the dimension it approaches the true value from below, which is enough for a step-size
    bound.
    """
    op = FlatHessian(loss, theta)
    if op.dim == 1:
        return abs(float(op.matvec(torch.ones_like(theta.detach()))[0]))
    with warnings.catch_warnings():  # a rough estimate is all a step bound needs
        warnings.simplefilter("ignore", RuntimeWarning)
        res = lanczos(op, k=1, max_iters=max(2, min(iters, op.dim)), tol=1e-3,
                      true_residuals=False)
    return max(abs(float(res.top[0])), abs(float(res.bottom[0])))
