"""Data: the CIFAR-10 and CIFAR-100 readers, a reader of your own tensors, a synthetic stand-in,
on-device augmentation and tensor splits.

The Lightning datamodule lives in :mod:`losslands.data.datamodule` and is not imported here, so
``import losslands.data`` does not load Lightning.
"""

from losslands.data.augment import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    normalize,
    random_crop,
    random_crop_flip,
    random_flip,
)
from losslands.data.cifar10 import download_cifar10, ensure_cifar10, read_cifar10
from losslands.data.cifar100 import download_cifar100, ensure_cifar100, read_cifar100
from losslands.data.loader import DeviceLoader, EpochBatches, TensorSplits
from losslands.data.synthetic import make_synthetic
from losslands.data.tensors import read_tensors

__all__ = [
    "CIFAR10_MEAN",
    "CIFAR10_STD",
    "DeviceLoader",
    "EpochBatches",
    "TensorSplits",
    "download_cifar10",
    "download_cifar100",
    "ensure_cifar10",
    "ensure_cifar100",
    "make_synthetic",
    "normalize",
    "random_crop",
    "random_crop_flip",
    "random_flip",
    "read_cifar10",
    "read_cifar100",
    "read_tensors",
]
