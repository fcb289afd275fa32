"""Read, validate and download the official python release of CIFAR-10.

Krizhevsky (2009): 50,000 training and 10,000 test 32x32 colour images in 10 classes. The
python release unpacks to ``<root>/cifar-10-batches-py/`` with five training batches and one
test batch, each holding 10,000 images under ``data`` and ``labels``, and ``batches.meta``
(the format: :mod:`losslands.data.release`; ``RELEASE`` is built from this module's constants
at import).
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import Tensor

from losslands.data.release import Release

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
ALL_FILES = (*TRAIN_FILES, *TEST_FILES, META_FILE)
NUM_CLASSES = 10
IMAGES_PER_BATCH = 10000

RELEASE = Release(name="CIFAR-10", url=URL, md5=MD5, folder=FOLDER, files=ALL_FILES,
                  meta=META_FILE, names_key="label_names", label_key="labels",
                  num_classes=NUM_CLASSES)


def missing_files(root: str | os.PathLike) -> list[str]:
    """Names of the release files absent from ``<root>/cifar-10-batches-py``."""
    return RELEASE.missing_files(root)


def read_cifar10(root: str | os.PathLike) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Load the python release from ``<root>/cifar-10-batches-py``.

    Args:
        root: Directory containing ``cifar-10-batches-py`` (the config key ``data.root``).

    Returns:
        ``(train_x, train_y, test_x, test_y)``: uint8 images ``[N, 3, 32, 32]`` and int64 labels
        ``[N]``, with N = 50,000 for train and 10,000 for test, in file order.

    Raises:
        FileNotFoundError: A release file is missing (the message names it and the fix).
        ValueError: A file is malformed (the message names the file and what is wrong).
    """
    train_x, train_y, test_x, test_y = RELEASE.read(
        root, ((TRAIN_FILES, IMAGES_PER_BATCH), (TEST_FILES, IMAGES_PER_BATCH)))
    return train_x, train_y, test_x, test_y


def download_cifar10(root: str | os.PathLike) -> None:
    """Download and extract the official archive into ``root`` (md5-checked by torchvision)."""
    RELEASE.download(root)


def ensure_cifar10(root: str | os.PathLike, download: bool) -> Path:
    """Make sure the release files exist under ``root``, downloading them if allowed.

    Args:
        root: Directory that holds (or will hold) ``cifar-10-batches-py`` (``data.root``).
        download: Fetch the archive when files are missing (``data.download``).

    Returns:
        The ``cifar-10-batches-py`` folder.

    Raises:
        FileNotFoundError: Files are missing and ``download`` is false.
        RuntimeError: The download failed (e.g. offline); chained to the original error.
    """
    # looked up at call time, so a test can replace download_cifar10
    return RELEASE.ensure(root, download, lambda r: download_cifar10(r))
