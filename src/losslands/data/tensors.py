"""Your own dataset as tensors in one file (``data=tensors data.path=FILE``).

The file is a ``.npz`` (``np.savez``) or a ``.pt`` (``torch.save`` of a dict) holding
``train_x``, ``train_y``, ``test_x`` and ``test_y`` (NumPy arrays or tensors), and optionally
``mean`` and ``std``. Inputs are uint8 or floating point, one sample per row of the first
dimension, the same sample shape in both splits (``[N, C, H, W]`` images or ``[N, D]``
features); labels are 1-D integers in ``0..num_classes-1``. Model inputs are
``(x - mean) / std`` when both are given, else ``x`` as float32: no hidden rescaling, so give
``mean``/``std`` in the units stored (0..255 for uint8). ``.pt`` files load without running code
(:func:`losslands.safe_load.load_torch`); ``.npz`` files load with ``allow_pickle=False``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from losslands.safe_load import load_torch

REQUIRED = ("train_x", "train_y", "test_x", "test_y")
OPTIONAL = ("mean", "std")
SUFFIXES = (".npz", ".pt", ".pth")


@dataclass
class TensorData:
    """The validated contents of a tensors file; inputs are uint8 or float32."""

    train_x: Tensor
    train_y: Tensor
    test_x: Tensor
    test_y: Tensor
    mean: Tensor | None = None
    std: Tensor | None = None


class Standardize:
    """``(x - mean) / std`` in float32, broadcast over the sample shape.

    ``mean`` and ``std`` are scalars, per-channel vectors ``[C]`` (dimension 1 of the inputs)
    or full per-sample tensors.
    """

    def __init__(self, mean: Tensor, std: Tensor, sample_shape: tuple[int, ...]) -> None:
        self.mean = _broadcastable(mean.float(), sample_shape, "mean")
        self.std = _broadcastable(std.float(), sample_shape, "std")
        self._on: dict[torch.device, tuple[Tensor, Tensor]] = {}

    def __call__(self, x: Tensor) -> Tensor:
        if x.device not in self._on:  # copy the statistics to each device once
            self._on[x.device] = (self.mean.to(x.device), self.std.to(x.device))
        mean, std = self._on[x.device]
        return (x.float() - mean) / std


def to_float(x: Tensor) -> Tensor:
    """Inputs as float32, unscaled (the transform without ``mean``/``std``)."""
    return x.float()


def _broadcastable(t: Tensor, sample_shape: tuple[int, ...], name: str) -> Tensor:
    if t.numel() == 1:
        return t.reshape(())
    if tuple(t.shape) == sample_shape:
        return t
    if t.dim() == 1 and len(sample_shape) >= 2 and t.shape[0] == sample_shape[0]:
        return t.reshape(-1, *([1] * (len(sample_shape) - 1)))  # one value per channel
    raise ValueError(
        f"{name} has shape {tuple(t.shape)}; expected a scalar, one value per channel "
        f"[{sample_shape[0]}] or the sample shape {list(sample_shape)}"
    )


def read_tensors(path: str | os.PathLike, num_classes: int) -> TensorData:
    """Read and validate a tensors file.

    Args:
        path: a ``.npz`` or ``.pt`` file (see the module docstring for its keys).
        num_classes: labels must lie in ``0..num_classes-1`` (``data.num_classes``).

    Raises:
        FileNotFoundError: no such file.
        ValueError: a missing key or a bad shape, dtype, label or statistic; the message names
            the file, the key and what was expected.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"data.path={str(path)!r}: no such file")
    if path.suffix == ".npz":
        raw = _read_npz(path)
    elif path.suffix in (".pt", ".pth"):
        raw = _read_pt(path)
    else:
        raise ValueError(f"{path}: data=tensors reads {', '.join(SUFFIXES)} files, "
                         f"not {path.suffix or 'files without a suffix'}")
    return validate(raw, num_classes, str(path))


def _read_npz(path: Path) -> dict[str, Any]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except ValueError as err:  # object arrays would need pickle: refused
        raise ValueError(f"{path}: {err} (save plain numeric arrays)") from err


def _read_pt(path: Path) -> Mapping[str, Any]:
    obj = load_torch(path, opt_in="save it as a dict of tensors or plain NumPy arrays, or as .npz")
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} holds a {type(obj).__name__}; expected a dict with keys "
                         f"{', '.join(REQUIRED)} (and optionally mean, std)")
    return obj


def _tensor(value: Any, key: str, where: str) -> Tensor:
    if isinstance(value, np.ndarray):
        if value.dtype.kind not in "biuf":
            raise ValueError(f"{where}: {key} has dtype {value.dtype}; expected numbers")
        return torch.from_numpy(np.ascontiguousarray(value))
    if isinstance(value, Tensor):
        return value.detach().cpu()
    raise ValueError(f"{where}: {key} is a {type(value).__name__}; expected an array or tensor")


def validate(raw: Mapping[str, Any], num_classes: int, where: str = "data") -> TensorData:
    """Check the arrays of a tensors file and return them as tensors (inputs uint8 or float32).

    Raises:
        ValueError: naming ``where``, the key and what was expected.
    """
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        raise ValueError(f"{where}: missing {', '.join(missing)}; found keys "
                         f"{', '.join(map(str, raw)) or 'none'}; expected {', '.join(REQUIRED)} "
                         f"(and optionally {', '.join(OPTIONAL)})")
    t = {k: _tensor(raw[k], k, where) for k in (*REQUIRED, *OPTIONAL) if raw.get(k) is not None}
    for split in ("train", "test"):
        x, y = t[f"{split}_x"], t[f"{split}_y"]
        if not (x.dtype == torch.uint8 or x.dtype.is_floating_point) or x.dim() < 2:
            raise ValueError(f"{where}: {split}_x must be uint8 or floating point with one sample "
                             f"per row, [N, ...]; got {x.dtype} of shape {list(x.shape)}")
        if x.shape[0] == 0:
            raise ValueError(f"{where}: {split}_x holds no samples")
        if x.dtype.is_floating_point:
            x = t[f"{split}_x"] = x.float()
            if not torch.isfinite(x).all():
                raise ValueError(f"{where}: {split}_x holds NaN or infinite values")
        if y.dim() != 1 or y.dtype.is_floating_point or y.dtype.is_complex or y.dtype == torch.bool:
            raise ValueError(f"{where}: {split}_y must be a 1-D integer array of class indices; "
                             f"got {y.dtype} of shape {list(y.shape)}")
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"{where}: {x.shape[0]} {split}_x samples but {y.shape[0]} "
                             f"{split}_y labels")
        y = t[f"{split}_y"] = y.long()
        lo, hi = int(y.min()), int(y.max())
        if lo < 0 or hi >= num_classes:
            raise ValueError(f"{where}: {split}_y must lie in 0..{num_classes - 1} "
                             f"(data.num_classes={num_classes}); got {lo}..{hi}")
    if t["train_x"].shape[1:] != t["test_x"].shape[1:]:
        raise ValueError(f"{where}: train_x samples have shape {list(t['train_x'].shape[1:])} but "
                         f"test_x samples {list(t['test_x'].shape[1:])}")
    if ("mean" in t) != ("std" in t):
        raise ValueError(f"{where}: give both mean and std, or neither")
    if "mean" in t:
        sample = tuple(t["train_x"].shape[1:])
        for key in OPTIONAL:
            s = t[key] = t[key].float()
            _broadcastable(s, sample, f"{where}: {key}")
            if not torch.isfinite(s).all():
                raise ValueError(f"{where}: {key} holds NaN or infinite values")
        if not (t["std"] > 0).all():
            raise ValueError(f"{where}: std must be > 0 everywhere")
    return TensorData(t["train_x"], t["train_y"], t["test_x"], t["test_y"],
                      t.get("mean"), t.get("std"))


def transform_for(data: TensorData):
    """The loader transform of ``data``: :class:`Standardize` with its statistics, else
    :func:`to_float`."""
    if data.mean is None:
        return to_float
    return Standardize(data.mean, data.std, tuple(data.train_x.shape[1:]))
