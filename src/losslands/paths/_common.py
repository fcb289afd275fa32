"""Shared plumbing for the path methods: the progress-callback type and mini-batch streams.

Progress callbacks are called as ``progress(done, total, info)`` with ``info`` a dict of floats.

Convention: a stochastic loss is ``loss_fn(theta, batch)`` with ``batch`` an opaque object drawn
from ``batches``, an iterable of batches (a list, a DataLoader, or an endless generator). With
``batches=None`` the loss is deterministic and called as ``loss_fn(theta)``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

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
