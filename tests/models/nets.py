"""A model class defined outside losslands (not a test file), for ``model._target_`` tests:
``model=custom model._target_=tests.models.nets.Net +model.width=8``."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class Net(nn.Module):
    """Conv(3->width, stride 4) - BatchNorm - ReLU - Linear on 32x32 images.

    Args:
        width: Convolution channels.
        num_classes: Output logits.
    """

    def __init__(self, width: int = 16, num_classes: int = 10) -> None:
        super().__init__()
        self.width = width
        self.conv = nn.Conv2d(3, width, 3, stride=4)
        self.bn = nn.BatchNorm2d(width)
        self.head = nn.Linear(width * 8 * 8, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(torch.flatten(torch.relu(self.bn(self.conv(x))), 1))
