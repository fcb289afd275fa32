"""Read, validate and download the official python release of CIFAR-100.

Krizhevsky (2009): 50,000 training and 10,000 test 32x32 colour images in 100 classes (grouped
into 20 superclasses). The python release unpacks to ``<root>/cifar-100-python/`` with
``train``, ``test`` and ``meta``; ``fine_labels`` are the 100-class labels used here
(``coarse_labels`` holds the superclasses) and ``meta`` names the classes in
``fine_label_names`` (the format: :mod:`losslands.data.release`).
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from losslands.data.release import Release

URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
FOLDER = "cifar-100-python"
TRAIN_FILE, TEST_FILE, META_FILE = "train", "test", "meta"
ALL_FILES = (TRAIN_FILE, TEST_FILE, META_FILE)
NUM_CLASSES = 100
SPLIT_SIZES = {TRAIN_FILE: 50_000, TEST_FILE: 10_000}

RELEASE = Release(name="CIFAR-100", url=URL, md5=MD5, folder=FOLDER, files=ALL_FILES,
                  meta=META_FILE, names_key="fine_label_names", label_key="fine_labels",
                  num_classes=NUM_CLASSES)


def missing_files(root: str | os.PathLike) -> list[str]:
    """Names of the release files absent from ``<root>/cifar-100-python``."""
    return RELEASE.missing_files(root)


def read_cifar100(root: str | os.PathLike) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load the python release from ``<root>/cifar-100-python`` (fine labels).

    Args:
        root: Directory containing ``cifar-100-python`` (the config key ``data.root``).

    Returns:
        ``(train_x, train_y, test_x, test_y)``: uint8 images ``[N, 3, 32, 32]`` and int64 labels
        ``[N]`` in 0..99, N = 50,000 for train and 10,000 for test, in file order.

    Raises:
        FileNotFoundError: A release file is missing (the message names it and the fix).
        ValueError: A file is malformed (the message names the file and what is wrong).
    """
    train_x, train_y, test_x, test_y = RELEASE.read(
        root, (((TRAIN_FILE,), SPLIT_SIZES[TRAIN_FILE]), ((TEST_FILE,), SPLIT_SIZES[TEST_FILE])))
    return train_x, train_y, test_x, test_y


def download_cifar100(root: str | os.PathLike) -> None:
    """Download and extract the official archive into ``root`` (md5-checked by torchvision)."""
    RELEASE.download(root)


def ensure_cifar100(root: str | os.PathLike, download: bool) -> Path:
    """Make sure the release files exist under ``root``, downloading them if allowed.

    Returns:
        The ``cifar-100-python`` folder.

    Raises:
        FileNotFoundError: Files are missing and ``download`` is false.
        RuntimeError: The download failed (e.g. offline); chained to the original error.
    """
    # looked up at call time, so a test can replace download_cifar100
    return RELEASE.ensure(root, download, lambda r: download_cifar100(r))
