"""The official python releases of CIFAR-10 and CIFAR-100: one reader for both formats.

Krizhevsky (2009), "Learning Multiple Layers of Features from Tiny Images". Each release unpacks
to one folder of pickled dicts (written by Python 2, so keys load as bytes): ``data`` is an
Nx3072 uint8 array of channel-major 32x32 colour images, the labels a list of ints under a
release-specific key, and a meta file names the classes. :class:`Release` describes one
release; :mod:`losslands.data.cifar10` and :mod:`losslands.data.cifar100` hold theirs.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

IMAGE_SHAPE = (3, 32, 32)

# The files hold only numpy arrays, lists, ints and strings; refusing every other global keeps a
# tampered file from running code when it is unpickled. Copies re-saved by Python 3 may also
# hold numpy's protocol-5 _frombuffer, or bytes as _codecs.encode (protocol 2).
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


@dataclass(frozen=True)
class Release:
    """One python release.

    Attributes:
        name: e.g. ``"CIFAR-10"`` (in messages).
        url, md5: the official archive and its checksum.
        folder: the folder the archive unpacks to.
        files: every file of the release (checked before reading).
        meta: the meta file; ``names_key`` its class-name list.
        label_key: the key of the labels read (``labels``, or ``fine_labels`` for CIFAR-100).
        num_classes: labels lie in ``0..num_classes - 1``.
    """

    name: str
    url: str
    md5: str
    folder: str
    files: tuple[str, ...]
    meta: str
    names_key: str
    label_key: str
    num_classes: int

    @property
    def archive(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    def fix_hint(self, root: str | os.PathLike) -> str:
        return (
            f"Set data.root to the directory containing {self.folder}/ (now data.root="
            f"{str(root)!r}), or set data.download=true when online to fetch {self.url}; offline, "
            f"extract {self.archive} into data.root from a machine that has it."
        )

    def missing_files(self, root: str | os.PathLike) -> list[str]:
        """Names of the release files absent from ``<root>/<folder>``."""
        folder = Path(root).expanduser() / self.folder
        return [name for name in self.files if not (folder / name).is_file()]

    def check_present(self, root: str | os.PathLike) -> Path:
        """The release folder; FileNotFoundError naming the missing files and the fix."""
        folder = Path(root).expanduser() / self.folder
        missing = self.missing_files(root)
        if missing:
            raise FileNotFoundError(
                f"{self.name} files missing from {folder}: {', '.join(missing)}. {self.fix_hint(root)}"
            )
        return folder

    def load(self, path: Path) -> dict:
        """Unpickle one file (plain arrays only); ValueError naming the file otherwise."""
        try:
            with path.open("rb") as f:
                obj = _ArrayUnpickler(f, encoding="bytes").load()
        except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as err:
            raise ValueError(
                f"{path} is not a {self.name} python file ({err}); re-extract {self.archive}"
            ) from err
        if not isinstance(obj, dict):
            raise ValueError(f"{path} holds a {type(obj).__name__}, expected a dict of {self.name} data")
        return obj

    def read_split(self, path: Path, size: int) -> tuple[Tensor, Tensor]:
        """Images ``[size, 3, 32, 32]`` uint8 and labels ``[size]`` int64 of one file, validated."""
        split = self.load(path)
        data: Any = _get(split, "data", path)
        labels = _get(split, self.label_key, path)
        expected = (size, int(np.prod(IMAGE_SHAPE)))
        if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.shape != expected:
            got = (f"{data.dtype} array of shape {data.shape}" if isinstance(data, np.ndarray)
                   else type(data).__name__)
            raise ValueError(f"{path}: 'data' must be a uint8 array of shape {expected}, got {got}")
        key = self.label_key
        try:
            y = np.asarray(labels, dtype=np.int64)
        except (TypeError, ValueError) as err:
            raise ValueError(f"{path}: '{key}' is not a list of integers ({err})") from err
        if y.shape != (size,):
            raise ValueError(f"{path}: expected {size} {key}, got shape {y.shape}")
        if y.size and (y.min() < 0 or y.max() >= self.num_classes):
            raise ValueError(
                f"{path}: {key} must lie in 0..{self.num_classes - 1}, got range {y.min()}..{y.max()}"
            )
        x = torch.from_numpy(np.ascontiguousarray(data).reshape(-1, *IMAGE_SHAPE))
        return x, torch.from_numpy(y)

    def read(self, root: str | os.PathLike, splits: tuple[tuple[tuple[str, ...], int], ...]
             ) -> list[Tensor]:
        """``[x, y]`` per split (its files concatenated in order, each holding ``size`` images),
        after checking that every file is present and the meta file lists the classes."""
        folder = self.check_present(root)
        meta = folder / self.meta
        names = _get(self.load(meta), self.names_key, meta)
        if len(names) != self.num_classes:
            raise ValueError(f"{meta}: expected {self.num_classes} {self.names_key}, got {len(names)}")
        out: list[Tensor] = []
        for files, size in splits:
            parts = [self.read_split(folder / name, size) for name in files]
            out += [torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])]
        return out

    def download(self, root: str | os.PathLike) -> None:
        """Download and extract the official archive into ``root`` (md5-checked by torchvision)."""
        from torchvision.datasets.utils import download_and_extract_archive

        download_and_extract_archive(self.url, download_root=str(Path(root).expanduser()), md5=self.md5)

    def ensure(self, root: str | os.PathLike, download: bool,
               fetch: Callable[[str | os.PathLike], None]) -> Path:
        """The release folder, fetched with ``fetch(root)`` first when files are missing and
        ``download`` is true.

        Raises:
            FileNotFoundError: Files are missing and ``download`` is false.
            RuntimeError: The download failed (e.g. offline); chained to the original error.
        """
        if self.missing_files(root) and download:
            try:
                fetch(root)
            except Exception as err:  # any network, checksum or archive failure gets the same fix
                raise RuntimeError(
                    f"downloading {self.name} into data.root={str(root)!r} failed ({err!r}). "
                    f"Offline, set data.download=false and data.root to a directory that already "
                    f"contains {self.folder}/ (extracted from {self.archive})."
                ) from err
        return self.check_present(root)


def _get(batch: dict, key: str, path: Path) -> Any:
    # Python 2 pickles load with bytes keys under encoding='bytes'; re-saved copies may use str.
    for k in (key.encode(), key):
        if k in batch:
            return batch[k]
    raise ValueError(f"{path} has no {key!r} entry (keys: {sorted(map(repr, batch))})")
