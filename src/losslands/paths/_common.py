"""Shared plumbing for the path methods: the progress-callback type and mini-batch streams.

Progress callbacks are called as ``progress(done, total, info)`` with ``info`` a dict of floats.

Convention: a stochastic loss is ``loss_fn(theta, batch)`` with ``batch`` an opaque object drawn
from ``batches``, an iterable of batches (a list, a DataLoader, or an endless generator). With
``batches=None`` the loss is deterministic and called as ``loss_fn(theta)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

import torch
from torch import Tensor

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
    """Largest ``|eigenvalue|`` of the Hessian of ``loss`` at ``theta``, by power iteration.

    Hessian-vector products by double backward on the flat vector (Pearlmutter 1994); the start
    vector is fixed (all ones) so the estimate is deterministic. A few iterations suffice for a
    step-size bound: the estimate approaches the top ``|eigenvalue|`` from below.
    """
    x = theta.detach().requires_grad_(True)
    with torch.enable_grad():
        (g,) = torch.autograd.grad(loss(x), x, create_graph=True)
    if not g.requires_grad:  # at most linear: no curvature
        return 0.0
    v = torch.ones_like(x) / x.numel() ** 0.5
    value = 0.0
    for _ in range(iters):
        (hv,) = torch.autograd.grad(g, x, grad_outputs=v, retain_graph=True)
        norm = float(hv.norm())
        if not norm > 0:
            return 0.0
        value, v = norm, hv / norm
    return value
