"""ResNet-20 for CIFAR-10.

He, Zhang, Ren, Sun (2016), "Deep Residual Learning for Image Recognition", Sec. 4.2: a 3x3
convolution with 16 filters, then three stages of ``n = 3`` basic blocks with 16, 32 and 64
filters on 32x32, 16x16 and 8x8 maps (the first block of stages 2 and 3 downsamples with
stride 2), global average pooling and a linear classifier: 6n + 2 = 20 weighted layers.
"""

from __future__ import annotations

from torch import Tensor, nn
from torch.nn import functional as F

_SHORTCUTS = ("A", "B")


class _ZeroPadShortcut(nn.Module):
    """Option A: identity on a stride-2 subsample, with zero channels appended (no parameters)."""

    def __init__(self, extra_channels: int) -> None:
        super().__init__()
        self.extra_channels = extra_channels

    def forward(self, x: Tensor) -> Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, 0, self.extra_channels))


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers with a shortcut connection, ReLU after the addition."""

    def __init__(self, in_planes: int, planes: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            if shortcut == "A":
                self.shortcut = _ZeroPadShortcut(planes - in_planes)
            else:
                self.shortcut = nn.Sequential(
                    nn.Conv2d(in_planes, planes, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(planes),
                )

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet20(nn.Module):
    """CIFAR ResNet-20 (He et al. 2016, Sec. 4.2).

    The default ``shortcut="A"`` is the paper's CIFAR choice: identity shortcuts, zero-padded
    where the width doubles, so the network has exactly the parameters of its plain
    counterpart: 269,722 with 10 classes (the paper's "0.27M"). ``shortcut="B"`` uses 1x1
    projection + BatchNorm at the two downsampling blocks instead (272,474 parameters).
    Convolutions use the normal initialisation of He, Zhang, Ren, Sun (2015), "Delving Deep into
    Rectifiers" (std sqrt(2 / fan_in)), as the paper does.

    Args:
        num_classes: Output logits.
        shortcut: ``"A"`` (zero-padding identity) or ``"B"`` (projection) at downsampling.
    """

    def __init__(self, num_classes: int = 10, shortcut: str = "A") -> None:
        super().__init__()
        if shortcut not in _SHORTCUTS:
            raise ValueError(f"ResNet20 shortcut must be 'A' or 'B', got {shortcut!r}")
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        stages, in_planes = [], 16
        for planes, stride in ((16, 1), (32, 2), (64, 2)):
            blocks = []
            for i in range(3):
                blocks.append(BasicBlock(in_planes, planes, stride if i == 0 else 1, shortcut))
                in_planes = planes
            stages.append(nn.Sequential(*blocks))
        self.layer1, self.layer2, self.layer3 = stages
        self.fc = nn.Linear(64, num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")

    def forward(self, x: Tensor) -> Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)
        return self.fc(out)
