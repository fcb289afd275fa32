"""Quadratic Bézier curve between two parameter vectors, trained to lie in a low-loss valley.

Garipov, Izmailov, Podoprikhin, Vetrov & Wilson 2018, "Loss Surfaces, Mode Connectivity, and
Fast Ensembling of DNNs": ``phi(t) = (1-t)^2 a + 2t(1-t) c + t^2 b`` with fixed ends ``a``, ``b``
and a trainable control point ``c``, trained by drawing ``t ~ U[0, 1]`` at every step and
descending the (mini-batch) loss at ``phi(t)``, i.e. minimising ``E_t L(phi(t))``.

Optimiser (our choice, scale-free): Adam, whose steps do not depend on the loss scale. Adam moves
every coordinate by about its learning rate, so a step of ``D`` coordinates has norm about
``lr_abs * sqrt(D)``; the learning rate is therefore given per coordinate in units of the RMS
coordinate distance ``||b - a|| / sqrt(D)``, which makes a step move the control point by about
``lr * ||b - a||`` in any dimension. It decays by a cosine schedule to 1% of its initial value so
the stochastic-``t`` noise averages out by the end.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from losslands.paths._common import Progress, resolve_eval_loss, step_losses

OptimizerFactory = Callable[[list[Tensor], float], torch.optim.Optimizer]


@dataclass
class BezierResult:
    """Outcome of :func:`bezier_curve`.

    Attributes:
        control: Trained control point ``c``.
        t: Evaluation grid on [0, 1] (float64, ends included).
        losses: Evaluation loss at ``phi(t)`` (float64).
        barrier: ``max_t loss - max(loss(a), loss(b))`` on the grid.
        saddle_t: The ``t`` of the highest grid point.
        history: Training (mini-batch) loss at every step.
    """

    control: Tensor
    t: Tensor
    losses: Tensor
    barrier: float
    saddle_t: float
    history: list[float] = field(default_factory=list)


def bezier_point(start: Tensor, control: Tensor, end: Tensor, t: float) -> Tensor:
    """``phi(t) = (1-t)^2 start + 2t(1-t) control + t^2 end``; exact copies of the ends at 0 and 1."""
    if t == 0.0:
        return start.detach().clone()
    if t == 1.0:
        return end.detach().clone()
    return _phi(start, control, end, t)


def _phi(start: Tensor, control: Tensor, end: Tensor, t: float) -> Tensor:
    return (1.0 - t) ** 2 * start + 2.0 * t * (1.0 - t) * control + t**2 * end


def _adam(params: list[Tensor], lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def bezier_curve(
    loss_fn: Callable[..., Tensor],
    start: Tensor,
    end: Tensor,
    batches: Iterable[Any] | None = None,
    *,
    eval_loss: Callable[[Tensor], Tensor] | None = None,
    steps: int = 1000,
    lr: float = 0.02,
    optimizer: str | OptimizerFactory = "adam",
    seed: int = 0,
    n_eval: int = 101,
    progress: Progress | None = None,
) -> BezierResult:
    """Train the control point of a quadratic Bézier curve from ``start`` to ``end``.

    Args:
        loss_fn: ``loss_fn(theta, batch) -> scalar tensor``, or ``loss_fn(theta)`` when
            ``batches`` is None; differentiable, on flat 1-D vectors.
        start: Fixed end at ``t = 0``, 1-D.
        end: Fixed end at ``t = 1``, 1-D.
        batches: Iterable of mini-batches, cycled through; None for a deterministic ``loss_fn``.
        eval_loss: Fixed loss for the evaluation grid. Default: ``loss_fn`` if deterministic,
            else its mean over ``batches`` when that is a list or tuple.
        steps: Training steps (one ``t`` and one batch each).
        lr: Initial learning rate: Adam's first step moves the control point by ``lr *
            ||end - start||`` (per coordinate, ``lr * ||end - start|| / sqrt(D)``).
        optimizer: ``"adam"`` or a factory ``(params, lr) -> torch.optim.Optimizer`` (it gets the
            absolute per-coordinate learning rate; only Adam-like optimisers are scale-free).
        seed: Seed of the generator drawing ``t``.
        n_eval: Evaluation grid size on [0, 1].
        progress: Optional ``progress(step, steps, {"loss": ..., "t": ...})``.

    Returns:
        A :class:`BezierResult`.
    """
    if start.ndim != 1 or start.shape != end.shape:
        raise ValueError(
            f"start and end must be 1-D of equal length, got {tuple(start.shape)} and "
            f"{tuple(end.shape)}; flatten them with losslands.flat.get_flat"
        )
    if n_eval < 2 or steps < 0:
        raise ValueError(f"need n_eval >= 2 and steps >= 0, got n_eval={n_eval}, steps={steps}")
    if optimizer == "adam":
        make = _adam
    elif callable(optimizer):
        make = optimizer
    else:
        raise ValueError(
            f"unknown optimizer {optimizer!r}: use 'adam' or a (params, lr) -> Optimizer factory"
        )
    evaluate = resolve_eval_loss(loss_fn, batches, eval_loss)
    a, b = start.detach(), end.detach()
    scale = float((b - a).norm())
    if not scale > 0:
        raise ValueError("start and end coincide: nothing to connect")

    control = (0.5 * (a + b)).clone().requires_grad_(True)
    opt = make([control], lr * scale / math.sqrt(a.numel()))
    # cosine decay to 1% of the initial rate
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda k: 0.01 + 0.99 * 0.5 * (1.0 + math.cos(math.pi * k / max(steps, 1)))
    )
    gen = torch.Generator().manual_seed(seed)
    history: list[float] = []
    for step, batch_loss in zip(range(steps), step_losses(loss_fn, batches), strict=False):
        t = float(torch.rand((), generator=gen, dtype=torch.float64))
        opt.zero_grad()
        value = batch_loss(_phi(a, control, b, t))
        value.backward()
        opt.step()
        sched.step()
        history.append(float(value.detach()))
        if progress is not None:
            progress(step + 1, steps, {"loss": history[-1], "t": t})

    c = control.detach()
    grid = torch.linspace(0.0, 1.0, n_eval, dtype=torch.float64)
    grid[0], grid[-1] = 0.0, 1.0
    with torch.no_grad():
        losses = torch.tensor(
            [float(evaluate(bezier_point(a, c, b, float(t)))) for t in grid], dtype=torch.float64
        )
    k = int(torch.argmax(losses))
    return BezierResult(
        control=c.clone(),
        t=grid,
        losses=losses,
        barrier=float(losses[k] - torch.max(losses[0], losses[-1])),
        saddle_t=float(grid[k]),
        history=history,
    )
