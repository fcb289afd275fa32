"""Filter-normalised directions (Li et al. 2018): filter norms, zeroed 1-D parameters, seeding."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from losslands.directions import filter_normalized_direction
from losslands.flat import get_flat, num_params, unflatten


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Conv2d(4, 5, 3, bias=False),
        nn.Flatten(),
        nn.Linear(5 * 4 * 4, 3),
    )


def test_filters_have_the_weight_norms_and_1d_parameters_are_zero():
    model = _net()
    with torch.no_grad():
        model[3].weight[2].mul_(7.0)  # filters of very different scales
        model[3].weight[4].zero_()
    d = filter_normalized_direction(model, torch.Generator().manual_seed(1))
    assert d.shape == (num_params(model),) and d.dtype == torch.float32
    parts = unflatten(model, d)
    weights = dict(model.named_parameters())
    for name, t in parts.items():
        w = weights[name].detach()
        if w.dim() <= 1:
            assert torch.count_nonzero(t) == 0, name
        else:
            expected = w.flatten(1).norm(dim=1)
            torch.testing.assert_close(t.flatten(1).norm(dim=1), expected, rtol=1e-5, atol=0)
            assert torch.count_nonzero(t.flatten(1).norm(dim=1)) == torch.count_nonzero(expected)
    assert torch.count_nonzero(parts["3.weight"][4]) == 0
    # The direction is random, not a copy of the weights.
    assert not torch.allclose(parts["0.weight"], weights["0.weight"])


def test_same_seed_same_direction_different_seed_different():
    model = _net()
    a = filter_normalized_direction(model, torch.Generator().manual_seed(3))
    b = filter_normalized_direction(model, torch.Generator().manual_seed(3))
    c = filter_normalized_direction(model, torch.Generator().manual_seed(4))
    assert torch.equal(a, b) and not torch.equal(a, c)
    # The model is left untouched.
    assert torch.equal(get_flat(model), get_flat(_net()))


def test_float64_and_filter_direction_is_gaussian_shaped():
    model = _net().double()
    d = filter_normalized_direction(model, torch.Generator().manual_seed(0))
    assert d.dtype == torch.float64
    # Within a filter, the direction is a rescaled Gaussian draw: the same draw gives the same
    # filter up to the norm ratio.
    g = torch.Generator().manual_seed(0)
    raw = torch.randn(model[0].weight.shape, generator=g, dtype=torch.float64)
    first = unflatten(model, d)["0.weight"][0]
    ratio = model[0].weight[0].norm() / raw[0].norm()
    torch.testing.assert_close(first, (raw[0] * ratio).detach())
    # The same weights in float32 give the same direction, rounded.
    d32 = filter_normalized_direction(_net(), torch.Generator().manual_seed(0))
    assert d32.dtype == torch.float32
    torch.testing.assert_close(d32, d.float())


def test_gpu_generator_is_rejected():
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    with pytest.raises(ValueError, match="CPU torch.Generator"):
        filter_normalized_direction(_net(), torch.Generator(device="cuda"))
