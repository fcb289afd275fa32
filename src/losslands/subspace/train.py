"""Minimise a loss over a random affine subspace ``theta0 + P z`` (Li et al. 2018).

Li, Farkhoor, Liu, Yosinski (2018), "Measuring the Intrinsic Dimension of Objective Landscapes",
train only ``z`` in ``R^d``, starting at ``z = 0``, with ``P`` a fixed random projection; the
smallest ``d`` that reaches a target performance is the intrinsic dimension.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from losslands.subspace.projections import DEFAULT_MAX_DENSE_BYTES, Projection, make_projection

DEFAULT_STEPS = 1000
DEFAULT_STOCHASTIC_LR = 1e-3


@dataclass
class SubspaceResult:
    """Outcome of :func:`train_in_subspace`.

    Attributes:
        loss: final loss: ``loss(theta)`` for a deterministic loss; with ``batches``, the
            unweighted mean of ``loss(theta, batch)`` over one pass of ``batches``.
        z: final subspace coordinates, shape ``(d,)``.
        theta: ``theta0 + P z``, shape ``(D,)``.
        history: ``history[i]`` is the loss at ``z`` after ``i`` steps, ``history[0]`` at
            ``z = 0``. Deterministic loss: ``steps + 1`` entries, the last equal to ``loss``.
            With ``batches``: the loss on step ``i``'s mini-batch, one entry per step taken
            (plus the stopping step's when ``callback`` stops training).
        steps: number of optimiser steps taken.
        stop_reason: ``"gtol"`` (relative gradient tolerance met), ``"stalled"`` (the line
            search made no progress), ``"callback"`` or ``"steps"``.
        projection: the projection ``P`` used; pass it back in to reuse the same subspace.
    """

    loss: float
    z: Tensor
    theta: Tensor
    history: list[float] = field(repr=False)
    steps: int
    stop_reason: str
    projection: Projection = field(repr=False)


def train_in_subspace(
    loss: Callable[..., Tensor],
    theta0: Tensor,
    d: int,
    *,
    projection: str | Projection = "dense",
    optimizer: Callable[..., torch.optim.Optimizer] | None = None,
    steps: int = DEFAULT_STEPS,
    lr: float | None = None,
    seed: int = 0,
    batches: Iterable[Any] | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    callback: Callable[[int, Tensor, float], bool | None] | None = None,
    gtol: float = 1e-10,
    max_dense_bytes: int = DEFAULT_MAX_DENSE_BYTES,
) -> SubspaceResult:
    """Minimise ``loss(theta0 + P z)`` over ``z`` in ``R^d`` from ``z = 0`` (Li et al. 2018).

    Default optimiser: for a deterministic loss (``batches=None``), L-BFGS with a strong-Wolfe
    line search (``lr=1``, one iteration per step, history 100, up to 25 line-search
    evaluations). Its steps are invariant to
    rescaling the loss, so it reaches the exact subspace minimum of a well-posed quadratic
    without tuning, whatever the loss scale. With ``batches``, Adam with ``lr=1e-3``: Adam's
    steps are also invariant to the loss scale (up to its ``eps``), but a constant-step
    stochastic method only approaches the minimum.

    Args:
        loss: ``loss(theta)`` on flat vectors of length ``D``, or ``loss(theta, batch)`` when
            ``batches`` is given (e.g. built with ``losslands.flat.flat_loss``). Returns a
            scalar tensor differentiable in ``theta``.
        theta0: starting parameters, 1-D; sets the device and dtype of ``z`` and ``P``.
        d: subspace dimension.
        projection: ``"dense"``, ``"sparse"``, ``"fastfood"`` (built with ``seed``), or a
            :class:`Projection` to reuse (its ``D``, ``d`` must match).
        optimizer: ``optimizer(params) -> torch.optim.Optimizer``: a ``torch.optim`` class or a
            ``functools.partial`` of one, e.g. ``partial(torch.optim.SGD, lr=0.1,
            momentum=0.9)``, so a probe can pass the job's optimiser. Every optimiser is
            stepped with a closure, so L-BFGS works too.
        steps: maximum number of optimiser steps.
        lr: learning rate; when given it is passed as ``lr=`` to ``optimizer`` (overriding a
            partial's); when ``None`` the optimiser's own default is kept.
        seed: seed of the projection when ``projection`` is a string.
        batches: a re-iterable (list, DataLoader) of mini-batches; step ``k`` uses the next
            batch, starting a new pass when one ends.
        progress: ``progress(step, steps, loss)`` after each step's first evaluation, for
            display only.
        callback: ``callback(step, z, loss)`` at the same point (``z`` is the live tensor,
            detached: do not modify it); returning ``True`` stops training before that step.
        gtol: deterministic losses stop when ``max|grad_z|`` falls to ``gtol`` times its value at
            ``z = 0`` (a relative, hence scale-free, criterion).
        max_dense_bytes: memory bound of a ``"dense"`` projection.

    Returns:
        A :class:`SubspaceResult`.
    """
    if not (isinstance(theta0, Tensor) and theta0.dim() == 1 and theta0.is_floating_point()):
        raise ValueError("theta0 must be a 1-D floating-point tensor (use losslands.flat.get_flat)")
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    theta0 = theta0.detach()
    P = _resolve_projection(projection, theta0, d, seed, max_dense_bytes)
    stochastic = batches is not None
    if stochastic and iter(batches) is batches:
        raise ValueError("batches must be re-iterable (a list or a DataLoader), not an iterator")

    z = torch.zeros(d, device=theta0.device, dtype=theta0.dtype, requires_grad=True)
    opt = _make_optimizer(optimizer, z, lr, stochastic)
    evaluate = _CachedObjective(loss, theta0, P, z)
    stream = _cycle(batches) if stochastic else None
    line_search = isinstance(opt, torch.optim.LBFGS) and opt.defaults["line_search_fn"]

    history: list[float] = []
    stop_reason, grad0 = "steps", None
    for k in range(steps):
        batch = next(stream) if stochastic else None
        token = k if stochastic else None
        value, grad_max = evaluate(batch, token)
        history.append(value)
        if progress is not None:
            progress(k, steps, value)
        if callback is not None and callback(k, z.detach(), value):
            stop_reason = "callback"
            break
        if not stochastic:
            grad0 = grad_max if grad0 is None else grad0
            if grad_max <= gtol * grad0:
                stop_reason = "gtol"
                break
            if line_search and k > 0 and value >= history[-2]:
                stop_reason = "stalled"
                break
        opt.step(lambda batch=batch, token=token: evaluate.closure(batch, token))
    else:
        k = steps
        if not stochastic and steps > 0:
            value, grad_max = evaluate(None, None)
            history.append(value)
            stop_reason = "gtol" if grad_max <= gtol * grad0 else "steps"

    with torch.no_grad():
        theta = theta0 + P(z.detach())
        if stochastic:
            values = [float(loss(theta, b)) for b in batches]
            final = sum(values) / len(values)
        else:  # history[-1] is already the loss at the final z
            final = history[-1] if history else float(loss(theta))
    return SubspaceResult(
        loss=final,
        z=z.detach().clone(),
        theta=theta,
        history=history,
        steps=k,
        stop_reason=stop_reason,
        projection=P,
    )


def _resolve_projection(
    projection: str | Projection, theta0: Tensor, d: int, seed: int, max_dense_bytes: int
) -> Projection:
    D = theta0.numel()
    if isinstance(projection, Projection):
        if (projection.D, projection.d) != (D, d):
            raise ValueError(
                f"projection maps R^{projection.d} -> R^{projection.D} but theta0 has {D} entries "
                f"and d={d}; build it with make_projection(kind, {D}, {d})"
            )
        return projection
    return make_projection(
        projection,
        D,
        d,
        seed=seed,
        device=theta0.device,
        dtype=theta0.dtype,
        max_dense_bytes=max_dense_bytes,
    )


def _make_optimizer(
    optimizer: Callable[..., torch.optim.Optimizer] | None,
    z: Tensor,
    lr: float | None,
    stochastic: bool,
) -> torch.optim.Optimizer:
    if optimizer is None:
        if stochastic:
            return torch.optim.Adam([z], lr=DEFAULT_STOCHASTIC_LR if lr is None else lr)
        # Zero absolute tolerances: torch's defaults are in loss units, which would make
        # stopping depend on the loss scale; stopping is done here with a relative test.
        # max_eval bounds the line search (max_eval - 1 evaluations); torch's default for
        # max_iter=1 would allow none beyond the first trial step.
        return torch.optim.LBFGS(
            [z],
            lr=1.0 if lr is None else lr,
            max_iter=1,
            max_eval=26,
            history_size=100,
            tolerance_grad=0.0,
            tolerance_change=0.0,
            line_search_fn="strong_wolfe",
        )
    kwargs = {} if lr is None else {"lr": lr}
    opt = optimizer([z], **kwargs)
    if not isinstance(opt, torch.optim.Optimizer):
        raise ValueError(
            "optimizer must build a torch.optim.Optimizer from a parameter list: pass a class "
            "such as torch.optim.SGD or functools.partial(torch.optim.SGD, lr=0.1)"
        )
    return opt


class _CachedObjective:
    """Loss and gradient in ``z``, remembering the last evaluation.

    L-BFGS re-evaluates the point its line search just accepted at the start of the next
    step, and the training loop evaluates each step's starting point before the optimiser
    does; the cache answers both without another forward and backward pass.
    """

    def __init__(self, loss: Callable[..., Tensor], theta0: Tensor, P: Projection, z: Tensor):
        self.loss, self.theta0, self.P, self.z = loss, theta0, P, z
        self._key: tuple[Tensor, Any] | None = None
        self._value: Tensor | None = None
        self._grad: Tensor | None = None

    def closure(self, batch: Any, token: Any) -> Tensor:
        z = self.z
        if self._key is not None and self._key[1] == token and torch.equal(self._key[0], z):
            z.grad = self._grad.clone()
            return self._value
        z.grad = None
        theta = self.theta0 + self.P(z)
        value = self.loss(theta) if batch is None else self.loss(theta, batch)
        if not (isinstance(value, Tensor) and value.numel() == 1):
            raise ValueError("loss must return a scalar tensor")
        value.backward()
        self._key = (z.detach().clone(), token)
        self._value, self._grad = value.detach(), z.grad.detach().clone()
        return self._value

    def __call__(self, batch: Any, token: Any) -> tuple[float, float]:
        """``(loss, max |grad|)`` at the current ``z``."""
        value = self.closure(batch, token)
        return float(value), float(self.z.grad.abs().max())


def _cycle(batches: Iterable[Any]) -> Iterator[Any]:
    while True:
        empty = True
        for batch in batches:
            empty = False
            yield batch
        if empty:
            raise ValueError("batches is empty: pass at least one mini-batch")
