"""Data: the CIFAR-10 reader, a synthetic stand-in, on-device augmentation and the datamodule."""

from losslands.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    normalize,
    random_crop,
    random_crop_flip,
    random_flip,
)
from losslands.data.cifar10 import download_cifar10, ensure_cifar10, read_cifar10
from losslands.data.datamodule import CIFAR10DataModule, DeviceLoader
from losslands.data.synthetic import make_synthetic

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "CIFAR10DataModule",
    "DeviceLoader",
    "download_cifar10",
    "ensure_cifar10",
    "make_synthetic",
    "normalize",
    "random_crop",
    "random_crop_flip",
    "random_flip",
    "read_cifar10",
]
