"""Flat-vector views of a model's parameters: the common currency of the math cores.

Curvature, path and subspace code work on 1-D tensors ``theta`` of length ``D`` (the trainable
parameters of ``model.parameters()`` in order, flattened) and on loss callables ``f(theta)``.
These helpers convert between a model and that view without copying the model.
"""

from __future__ import annotations

import copy
import fnmatch
from collections.abc import Callable, Iterable

import torch
from torch import Tensor, nn
from torch.func import functional_call

Batch = tuple[Tensor, Tensor]


def trainable(model: nn.Module) -> list[tuple[str, nn.Parameter]]:
    """Named trainable parameters in ``model.parameters()`` order."""
    return [(n, p) for n, p in model.named_parameters() if p.requires_grad]


def num_params(model: nn.Module) -> int:
    """Number of trainable scalars ``D``."""
    return sum(p.numel() for _, p in trainable(model))


def get_flat(model: nn.Module) -> Tensor:
    """A detached copy of the trainable parameters as one 1-D tensor."""
    return torch.cat([p.detach().reshape(-1) for _, p in trainable(model)])


@torch.no_grad()
def set_flat(model: nn.Module, theta: Tensor) -> None:
    """Write a flat vector into the model's trainable parameters in place."""
    params = trainable(model)
    expected = sum(p.numel() for _, p in params)
    if theta.numel() != expected:
        raise ValueError(f"flat vector has {theta.numel()} entries, model has {expected} parameters")
    offset = 0
    for _, p in params:
        n = p.numel()
        p.copy_(theta[offset : offset + n].view_as(p))
        offset += n


def unflatten(model: nn.Module, theta: Tensor) -> dict[str, Tensor]:
    """Split a flat vector into a ``{name: tensor}`` dict shaped like the trainable parameters.

    The views keep ``theta``'s autograd graph, so gradients flow back to the flat vector.
    """
    out, offset = {}, 0
    for name, p in trainable(model):
        n = p.numel()
        out[name] = theta[offset : offset + n].view_as(p)
        offset += n
    if offset != theta.numel():
        raise ValueError(f"flat vector has {theta.numel()} entries, model has {offset} parameters")
    return out


def as_batches(data: Batch | Iterable[Batch]) -> list[Batch]:
    """Normalise one ``(inputs, targets)`` pair or an iterable of pairs to a list of pairs."""
    if isinstance(data, tuple) and len(data) == 2 and isinstance(data[0], Tensor):
        return [data]
    batches = list(data)
    if not batches:
        raise ValueError("no data: pass an (inputs, targets) pair or a non-empty iterable of pairs")
    return batches


def flat_loss(
    model: nn.Module,
    loss_fn: Callable[[Tensor, Tensor], Tensor],
    data: Batch | Iterable[Batch],
) -> Callable[[Tensor], Tensor]:
    """``f(theta)``: the sample-weighted mean loss over ``data`` at flat parameters ``theta``.

    ``loss_fn`` must return the mean over its batch (as ``nn.CrossEntropyLoss()`` does); batches
    of unequal size are weighted by their size, so the result is the mean over all samples.
    Buffers (e.g. BatchNorm statistics) are taken from the model as it is; call
    ``model.eval()`` first for a deterministic loss.
    """
    batches = as_batches(data)
    total = sum(int(x.shape[0]) for x, _ in batches)
    buffers = dict(model.named_buffers())

    def f(theta: Tensor) -> Tensor:
        params = unflatten(model, theta)
        params.update(buffers)
        loss = theta.new_zeros(())
        for x, y in batches:
            loss = loss + loss_fn(functional_call(model, params, (x,)), y) * (x.shape[0] / total)
        return loss

    return f


def batch_loss(
    model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor]
) -> Callable[[Tensor, Batch], Tensor]:
    """Differentiable mini-batch loss ``f(theta, (x, y))`` in training mode.

    Runs a private copy in ``train()`` mode, so BatchNorm normalises with batch statistics, as
    in training (its running statistics, updated in the copy, are never read).
    """
    train_model = copy.deepcopy(model).train()
    return lambda theta, batch: flat_loss(train_model, loss_fn, as_batches(batch))(theta)


def block_indices(model: nn.Module, blocks: str | list[str]) -> dict[str, Tensor]:
    """Coordinates (in the flat parameter vector) of each block: ``"layer"`` groups the
    parameters of one module (weight and bias), a list of fnmatch patterns makes one block per
    pattern (parameters matching several patterns go to the first)."""
    groups: dict[str, list[Tensor]] = {}
    offset = 0
    for name, p in trainable(model):
        idx = torch.arange(offset, offset + p.numel())
        offset += p.numel()
        if blocks == "layer":
            key = name.rsplit(".", 1)[0] if "." in name else name
        else:
            key = next((pat for pat in blocks if fnmatch.fnmatch(name, pat)), None)
            if key is None:
                continue
        groups.setdefault(key, []).append(idx)
    if not groups:
        names = [n for n, _ in trainable(model)]
        raise ValueError(f"probe.blocks={blocks!r} matches no parameter; the names are {names}")
    return {key: torch.cat(parts) for key, parts in groups.items()}
