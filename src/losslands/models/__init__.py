"""Models: a small CNN, the CIFAR ResNet-20 and a tiny MLP."""

from losslands.models.mlp import MLP
from losslands.models.resnet20 import ResNet20
from losslands.models.small_cnn import SmallCNN

__all__ = ["MLP", "ResNet20", "SmallCNN"]
