"""Loss and accuracy of a network, at its own weights or at any flat parameter vector."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn

from losslands.batchnorm import has_batchnorm, recompute_bn
from losslands.curvature.distributed import Shard, sharded_loss
from losslands.flat import flat_loss, set_flat

Batch = tuple[Tensor, Tensor]
LossFn = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[Batch],
    device: torch.device | str | None = None,
    loss_fn: LossFn | None = None,
) -> dict[str, float]:
    """Sample-weighted mean loss and accuracy of ``model`` over ``batches``.

    Args:
        model: evaluated as it is (the caller sets eval mode).
        batches: ``(x, y)`` pairs; a generator is fine (read once).
        device: move each batch there first, if given.
        loss_fn: batch-mean loss (default: cross-entropy).

    Returns:
        ``{"loss", "acc", "n"}``.
    """
    loss_fn = loss_fn or nn.functional.cross_entropy
    total, loss, correct = 0, 0.0, 0
    for x, y in batches:
        if device is not None:
            x, y = x.to(device), y.to(device)
        logits = model(x)
        n = int(y.shape[0])
        loss += float(loss_fn(logits.float(), y)) * n
        correct += int((logits.argmax(1) == y).sum())
        total += n
    if total == 0:
        raise ValueError("evaluate() got no data")
    return {"loss": loss / total, "acc": correct / total, "n": total}


class PointEvaluator:
    """Evaluates a network at arbitrary flat parameters ``theta`` on fixed data.

    Works on a private copy of ``model`` (in eval mode); the caller's model is never changed.
    With ``bn_data``, the copy's BatchNorm statistics are recomputed at every new ``theta``
    (cached, so metrics on several data sets at the same point cost one recomputation);
    without, the statistics stored in ``model`` are used everywhere.

    With ``shard`` (a data-parallel run, :mod:`losslands.curvature.distributed`), every rank
    passes the same full batches and evaluates only its contiguous part of their samples; sums
    are all-reduced, so every rank gets the values of the whole data. BatchNorm statistics are
    recomputed on all of ``bn_data`` by every rank, so the points agree exactly.

    Args:
        model: architecture, and the buffers used when there is no BatchNorm.
        loss_fn: mean loss ``loss_fn(logits, targets)``.
        bn_data: unaugmented training batches for :func:`~losslands.batchnorm.recompute_bn`.
        shard: this process's place in a data-parallel group, or None (one process).
    """

    def __init__(
        self, model: nn.Module, loss_fn: LossFn, bn_data: list[Batch] | None = None,
        shard: Shard | None = None,
    ) -> None:
        self.model = copy.deepcopy(model).eval()
        self.loss_fn = loss_fn
        self.bn_data = bn_data if has_batchnorm(model) and bn_data else None
        self.shard = shard
        self._theta: Tensor | None = None

    def at(self, theta: Tensor) -> nn.Module:
        """The private model with parameters ``theta`` (and recomputed BatchNorm statistics)."""
        theta = theta.detach()
        if self._theta is None or not torch.equal(self._theta, theta):
            set_flat(self.model, theta)
            if self.bn_data is not None:
                recompute_bn(self.model, self.bn_data)
            self._theta = theta.clone()
        return self.model

    def metrics(self, theta: Tensor, batches: list[Batch]) -> dict[str, float]:
        """Sample-weighted mean loss and accuracy at ``theta`` over ``batches``."""
        if self.shard is not None:
            return self._sharded_metrics(theta, batches)
        out = evaluate(self.at(theta), batches, loss_fn=self.loss_fn)
        return {"loss": out["loss"], "acc": out["acc"]}

    def _sharded_metrics(self, theta: Tensor, batches: list[Batch]) -> dict[str, float]:
        model = self.at(theta)
        own = self.shard.batches(batches)
        sums = [0.0, 0.0, 0.0]  # loss * n, correct, n over this rank's samples
        if own:
            out = evaluate(model, own, loss_fn=self.loss_fn)
            sums = [out["loss"] * out["n"], out["acc"] * out["n"], float(out["n"])]
        device = next(iter(model.parameters())).device
        loss, correct, n = self.shard.all_reduce(torch.tensor(sums, dtype=torch.float64, device=device)).tolist()
        if n == 0:
            raise ValueError("evaluate() got no data")
        return {"loss": loss / n, "acc": round(correct) / n}

    def loss(self, batches: list[Batch]) -> Callable[[Tensor], Tensor]:
        """Differentiable ``f(theta)``: mean loss over ``batches`` (statistics refreshed first)."""
        if self.shard is not None:
            f = sharded_loss(lambda own: flat_loss(self.model, self.loss_fn, own), batches, self.shard)
        else:
            f = flat_loss(self.model, self.loss_fn, batches)

        def at_theta(theta: Tensor) -> Tensor:
            self.at(theta)  # refreshes the buffers that ``f`` reads, in place
            return f(theta)

        return at_theta
