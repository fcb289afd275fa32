"""BatchNorm statistics at arbitrary weights: detection and recomputation (pure torch).

The running statistics stored in a checkpoint belong to that checkpoint's weights; at any other
point of parameter space they are stale. Following Garipov et al. (2018), "Loss Surfaces, Mode
Connectivity, and Fast Ensembling of DNNs", Sec. 4, and Entezari et al. (2022), "The Role of
Permutation Invariance in Linear Mode Connectivity of Neural Networks", they are recomputed at
every evaluated point on unaugmented training batches (:func:`recompute_bn`).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn

Batch = tuple[Tensor, Tensor]


def _norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    return [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds a BatchNorm layer that tracks running statistics."""
    return bool(_norms(model))


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: Iterable[Batch]) -> bool:
    """Reset every BatchNorm's running statistics and re-estimate them on ``batches``.

    Cumulative averaging (``momentum=None``): the running mean (variance) becomes the plain
    average over the batches of the batch means (unbiased batch variances), independent of the
    order and of the old statistics. The model's train/eval flags and momenta are restored.

    Returns:
        False (and does nothing) when the model has no BatchNorm.
    """
    norms = _norms(model)
    if not norms:
        return False
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in norms]
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        seen = 0
        for x, _ in batches:
            model(x)
            seen += 1
        if seen == 0:
            raise ValueError("recompute_bn got no batches: raise probe.bn_batches")
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        for m, training in modes:
            m.training = training
    return True
