"""A tiny fully connected network for fast tests."""

from __future__ import annotations

from torch import Tensor, nn


class MLP(nn.Module):
    """Flatten - ``depth`` x [Linear(hidden) - ReLU] - Linear(num_classes).

    ``depth=0`` gives multinomial logistic regression, whose loss is convex in the parameters,
    which makes closed-form checks possible.

    Args:
        in_features: Flattened input size (3072 for 3x32x32 images).
        hidden: Width of each hidden layer.
        depth: Number of hidden layers (>= 0).
        num_classes: Output logits.
    """

    def __init__(
        self, in_features: int = 3072, hidden: int = 32, depth: int = 1, num_classes: int = 10
    ) -> None:
        super().__init__()
        if depth < 0:
            raise ValueError(f"MLP depth must be >= 0 hidden layers, got depth={depth}")
        layers: list[nn.Module] = [nn.Flatten()]
        width = in_features
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.ReLU()]
            width = hidden
        layers.append(nn.Linear(width, num_classes))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(x)
