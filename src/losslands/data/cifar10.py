"""Read, validate and download the official python release of CIFAR-10.

Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images": 50,000 training and
10,000 test 32x32 colour images in 10 classes. The python release unpacks to
``<root>/cifar-10-batches-py/`` with five training batches, one test batch and ``batches.meta``,
each a pickled dict (written by Python 2, so keys load as bytes) whose ``data`` is a
10000x3072 uint8 array of channel-major rows and ``labels`` a list of ints.
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
MD5 = "c58f30108f718f92721af3b95e74349a"
FOLDER = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILES = ("test_batch",)
META_FILE = "batches.meta"
ALL_FILES = (*TRAIN_FILES, *TEST_FILES, META_FILE)
NUM_CLASSES = 10
IMAGES_PER_BATCH = 10000
IMAGE_SHAPE = (3, 32, 32)

# The batches hold only numpy arrays, lists, ints and strings; refusing every other global
# keeps a tampered file from running code when it is unpickled. Copies re-saved by Python 3
# may also hold numpy's protocol-5 _frombuffer, or bytes as _codecs.encode (protocol 2).
_ALLOWED_GLOBALS = {
    (module, name)
    for core in ("numpy.core", "numpy._core")
    for module, name in ((f"{core}.multiarray", "_reconstruct"), (f"{core}.numeric", "_frombuffer"))
} | {("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in _ALLOWED_GLOBALS:
            raise pickle.UnpicklingError(f"unexpected object {module}.{name}")
        return super().find_class(module, name)


def _fix_hint(root: str | os.PathLike) -> str:
    return (
        f"Set data.root to the directory containing {FOLDER}/ (now data.root={str(root)!r}), "
        f"or set data.download=true when online to fetch {URL}; offline, extract "
        f"cifar-10-python.tar.gz into data.root from a machine that has it."
    )


def missing_files(root: str | os.PathLike) -> list[str]:
    """Names of the release files absent from ``<root>/cifar-10-batches-py``."""
    folder = Path(root).expanduser() / FOLDER
    return [name for name in ALL_FILES if not (folder / name).is_file()]


def _check_present(root: str | os.PathLike) -> None:
    missing = missing_files(root)
    if missing:
        folder = Path(root).expanduser() / FOLDER
        raise FileNotFoundError(
            f"CIFAR-10 files missing from {folder}: {', '.join(missing)}. {_fix_hint(root)}"
        )


def _load(path: Path) -> dict:
    try:
        with path.open("rb") as f:
            obj = _ArrayUnpickler(f, encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
        raise ValueError(
            f"{path} is not a CIFAR-10 python batch ({err}); re-extract cifar-10-python.tar.gz"
        ) from err
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a {type(obj).__name__}, expected a dict of CIFAR-10 data")
    return obj


def _get(batch: dict, key: str, path: Path) -> Any:
    # Python 2 pickles load with bytes keys under encoding='bytes'; re-saved copies may use str.
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise ValueError(f"{path} has no {key!r} entry (keys: {sorted(map(repr, batch))})")


def _read_batch(path: Path) -> tuple[Tensor, Tensor]:
    batch = _load(path)
    data = _get(batch, "data", path)
    labels = _get(batch, "labels", path)
    expected = (IMAGES_PER_BATCH, int(np.prod(IMAGE_SHAPE)))
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != expected:
        got = (
            f"{data.dtype} array of shape {data.shape}"
            if isinstance(data, np.ndarray)
            else type(data).__name__
        )
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape {expected}, got {got}")
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{path}: 'labels' is not a list of integers ({err})") from err
    if y.shape != (IMAGES_PER_BATCH,):
        raise ValueError(f"{path}: expected {IMAGES_PER_BATCH} labels, got shape {y.shape}")
    if y.size and (y.min() < 0 or y.max() >= NUM_CLASSES):
        raise ValueError(
            f"{path}: labels must lie in 0..{NUM_CLASSES - 1}, got range {y.min()}..{y.max()}"
        )
    x = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, *IMAGE_SHAPE))
    return x, torch.from_numpy(y)


def _check_meta(path: Path) -> None:
    names = _get(_load(path), "label_names", path)
    if len(names) != NUM_CLASSES:
        raise ValueError(f"{path}: expected {NUM_CLASSES} label_names, got {len(names)}")


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
    _check_present(root)
    folder = Path(root).expanduser() / FOLDER
    _check_meta(folder / META_FILE)
    splits = []
    for names in (TRAIN_FILES, TEST_FILES):
        parts = [_read_batch(folder / name) for name in names]
        splits += [torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])]
    return splits[0], splits[1], splits[2], splits[3]


def download_cifar10(root: str | os.PathLike) -> None:
    """Download and extract the official archive into ``root`` (md5-checked by torchvision)."""
    from torchvision.datasets.utils import download_and_extract_archive

    download_and_extract_archive(URL, download_root=str(Path(root).expanduser()), md5=MD5)


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
    if missing_files(root) and download:
        try:
            download_cifar10(root)
        except Exception as err:  # any network, checksum or archive failure gets the same fix
            raise RuntimeError(
                f"downloading CIFAR-10 into data.root={str(root)!r} failed ({err!r}). Offline, "
                f"set data.download=false and data.root to a directory that already contains "
                f"{FOLDER}/ (extracted from cifar-10-python.tar.gz)."
            ) from err
    _check_present(root)
    return Path(root).expanduser() / FOLDER
