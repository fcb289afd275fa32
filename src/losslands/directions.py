"""Filter-normalised random directions in parameter space.

Li, Xu, Taylor, Studer, Goldstein (2018), "Visualizing the Loss Landscape of Neural Nets"
(NeurIPS), Sec. 4: draw ``d ~ N(0, I)`` shaped like the weights, then rescale every filter of
``d`` to the norm of the matching filter of the weights,
``d_ij <- d_ij / ||d_ij|| * ||theta_ij||``, so that a step along ``d`` is comparable across
layers and networks whatever the scale of their weights. A *filter* is one output unit: the slice
``w[i]`` of a weight tensor (a conv kernel ``w[i, :, :, :]``, a row of a linear layer). Following
the paper, directions of one-dimensional parameters (biases, BatchNorm weights and biases) are
set to zero, so the landscape is seen along the weight filters only.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from losslands.flat import trainable


def filter_normalized_direction(
    model: nn.Module, generator: torch.Generator | None = None
) -> Tensor:
    """A random direction, filter-normalised to ``model``'s weights (Li et al. 2018).

    Args:
        model: the network whose trainable parameters define the space and the filter norms.
        generator: a CPU ``torch.Generator`` for the Gaussian draw (made in float64 on the CPU,
            then cast, so a seed gives the same direction in every dtype and on every device).

    Returns:
        A flat tensor in :func:`losslands.flat.get_flat` order, on the parameters' device and
        dtype: zero on every parameter with ``dim() <= 1``; for every other parameter each filter
        ``d[i]`` has the Euclidean norm of ``w[i]`` (a zero filter stays zero).
    """
    if generator is not None and generator.device.type != "cpu":
        raise ValueError("pass a CPU torch.Generator (e.g. torch.Generator().manual_seed(0))")
    parts = []
    for _, p in trainable(model):
        if p.dim() <= 1:
            parts.append(torch.zeros(p.numel(), dtype=p.dtype, device=p.device))
            continue
        # float64 on the CPU: one seed gives the same direction in any dtype and on any device
        w = p.detach().double().cpu().flatten(1)
        d = torch.randn(w.shape, generator=generator, dtype=torch.float64)
        scale = w.norm(dim=1) / d.norm(dim=1).clamp_min(1e-300)
        parts.append((d * scale[:, None]).reshape(-1).to(dtype=p.dtype, device=p.device))
    if not parts:
        raise ValueError("model has no trainable parameters to draw a direction for")
    return torch.cat(parts)
