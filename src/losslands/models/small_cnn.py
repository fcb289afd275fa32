"""A two-convolution CNN for CIFAR-10, small enough for dense curvature probes on a CPU."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F


class SmallCNN(nn.Module):
    """Conv(3->32) - ReLU - Conv(32->64) - ReLU - MaxPool(2) - Linear(64*16*16 -> classes).

    Both convolutions are 3x3 with padding 1, so a 32x32 input keeps its size until the pool.
    Parameter names ``conv1``, ``conv2`` and ``fc`` are part of the interface: state dicts saved
    by earlier code load unchanged. 183,242 parameters with 10 classes.

    Args:
        num_classes: Output logits.
    """

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.fc = nn.Linear(64 * 16 * 16, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        return self.fc(torch.flatten(x, 1))
