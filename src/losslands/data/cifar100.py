"""Read, validate and download the official python release of CIFAR-100.

Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images": 50,000 training and
10,000 test 32x32 colour images in 100 classes (grouped into 20 superclasses). The python
release unpacks to ``<root>/cifar-100-python/`` with ``train``, ``test`` and ``meta``, each a
pickled dict (written by Python 2, so keys load as bytes); ``data`` is an Nx3072 uint8 array of
channel-major rows, ``fine_labels`` the 100-class labels used here (``coarse_labels`` holds the
superclasses), and ``meta`` names the classes in ``fine_label_names``. The files are unpickled
with CIFAR-10's allowlist of plain-array globals (:mod:`losslands.data.cifar10`).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losslands.data.cifar10 import IMAGE_SHAPE, _ArrayUnpickler, _get

URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
MD5 = "eb9058c3a382ffc7106e4002c42a8d85"
FOLDER = "cifar-100-python"
TRAIN_FILE, TEST_FILE, META_FILE = "train", "test", "meta"
ALL_FILES = (TRAIN_FILE, TEST_FILE, META_FILE)
NUM_CLASSES = 100
SPLIT_SIZES = {TRAIN_FILE: 50_000, TEST_FILE: 10_000}


def _fix_hint(root: str | os.PathLike) -> str:
    return (
        f"Set data.root to the directory containing {FOLDER}/ (now data.root={str(root)!r}), "
        f"or set data.download=true when online to fetch {URL}; offline, extract "
        f"cifar-100-python.tar.gz into data.root from a machine that has it."
    )


def missing_files(root: str | os.PathLike) -> list[str]:
    """Names of the release files absent from ``<root>/cifar-100-python``."""
    folder = Path(root).expanduser() / FOLDER
    return [name for name in ALL_FILES if not (folder / name).is_file()]


def _check_present(root: str | os.PathLike) -> None:
    missing = missing_files(root)
    if missing:
        folder = Path(root).expanduser() / FOLDER
        raise FileNotFoundError(
            f"CIFAR-100 files missing from {folder}: {', '.join(missing)}. {_fix_hint(root)}"
        )


def _load(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(
            f"{path} is not a CIFAR-100 python file ({err}); re-extract cifar-100-python.tar.gz"
        ) from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, expected a dict of CIFAR-100 data")
    return obj


def _read_split(path: Path, size: int) -> tuple[Tensor, Tensor]:
    split = _load(path)
    data: Any = _get(split, "data", path)
    labels = _get(split, "fine_labels", path)
    expected = (size, int(np.prod(IMAGE_SHAPE)))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != expected:
        got = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
               else type(data).__name__)
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape {expected}, got {got}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: 'fine_labels' is not a list of integers ({err})") from err
    if y.shape != (size,):
        raise ValueError(f"{path}: expected {size} fine_labels, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise ValueError(
            f"{path}: fine_labels must lie in 0..{NUM_CLASSES - 1}, got range {y.min()}..{y.max()}"
        )
    x = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, *IMAGE_SHAPE))
    return x, torch.from_numpy(y)


def _check_meta(path: Path) -> None:
    names = _get(_load(path), "fine_label_names", path)
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} fine_label_names, got {len(names)}")


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
    _check_present(root)
    folder = Path(root).expanduser() / FOLDER
    _check_meta(folder / META_FILE)
    train_x, train_y = _read_split(folder / TRAIN_FILE, SPLIT_SIZES[TRAIN_FILE])
    test_x, test_y = _read_split(folder / TEST_FILE, SPLIT_SIZES[TEST_FILE])
    return train_x, train_y, test_x, test_y


def download_cifar100(root: str | os.PathLike) -> None:
    """Download and extract the official archive into ``root`` (md5-checked by torchvision)."""
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(URL, download_root=str(Path(root).expanduser()), md5=MD5)


def ensure_cifar100(root: str | os.PathLike, download: bool) -> Path:
    """Make sure the release files exist under ``root``, downloading them if allowed.

    Returns:
        The ``cifar-100-python`` folder.

    Raises:
        FileNotFoundError: Files are missing and ``download`` is false.
        RuntimeError: The download failed (e.g. offline); chained to the original error.
    """
    if missing_files(root) and download:
        try:
            download_cifar100(root)
        except Exception as err:  # any network, checksum or archive failure gets the same fix
            raise RuntimeError(
                f"downloading CIFAR-100 into data.root={str(root)!r} failed ({err!r}). Offline, "
                f"set data.download=false and data.root to a directory that already contains "
                f"{FOLDER}/ (extracted from cifar-100-python.tar.gz)."
            ) from err
    _check_present(root)
    return Path(root).expanduser() / FOLDER
