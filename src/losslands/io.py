"""Atomic result files: a reader never sees a half-written JSON, checkpoint or figure."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def _umask() -> int:
    """The process umask, read without changing it where the OS allows."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    # os.umask can only be read by setting it: restore it at once
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic(path: str | os.PathLike, write: Callable[[str], None]) -> Path:
    """Write through ``write(tmp_path)`` to a temp file in the same folder, then rename.

    The file gets the mode ``open()`` would give it (0666 minus the umask), like every other
    file of the job, instead of mkstemp's private 0600.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        try:
            os.fchmod(fd, 0o666 & ~_umask())
        finally:
            os.close(fd)
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def to_jsonable(obj: Any, strict: bool = True) -> Any:
    """Convert tensors and numpy values into plain JSON values.

    With ``strict``, non-finite floats become ``None`` / ``"inf"`` / ``"-inf"`` (standard JSON);
    otherwise they are kept, and Python's ``json`` writes and reads them back as NaN/Infinity.
    """
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v, strict) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v, strict) for v in obj]
    if isinstance(obj, torch.Tensor):
        return to_jsonable(obj.detach().cpu().tolist(), strict)
    if hasattr(obj, "tolist") and not isinstance(obj, (str, bytes)):  # numpy arrays and scalars
        return to_jsonable(obj.tolist(), strict)
    if strict and isinstance(obj, float) and not math.isfinite(obj):
        return None if math.isnan(obj) else ("inf" if obj > 0 else "-inf")
    if isinstance(obj, Path):
        return str(obj)
    return obj


def write_json(path: str | os.PathLike, obj: Any, strict: bool = True) -> Path:
    """Atomically write ``obj`` (made JSON-able, see :func:`to_jsonable`) as indented JSON."""

    def write(tmp: str) -> None:
        with open(tmp, "w") as f:
            json.dump(to_jsonable(obj, strict), f, indent=2, sort_keys=False)
            f.write("\n")

    return _atomic(path, write)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Atomically write ``text`` (UTF-8): a reader sees the old file or the whole new one."""
    return _atomic(path, lambda tmp: Path(tmp).write_text(text, encoding="utf-8"))


def read_json(path: str | os.PathLike) -> Any:
    with open(path) as f:
        return json.load(f)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Atomically copy ``src`` to ``dst`` (a reader sees the old file or the whole new one)."""
    return _atomic(dst, lambda tmp: shutil.copyfile(src, tmp))


def save_torch(path: str | os.PathLike, obj: Any) -> Path:
    """Atomically ``torch.save`` an object (load it back with ``weights_only=True``)."""
    return _atomic(path, lambda tmp: torch.save(obj, tmp))


def save_figure(path: str | os.PathLike, fig: Any, dpi: int = 120) -> Path:
    """Atomically save a matplotlib ``Figure`` (build figures with ``matplotlib.figure.Figure``,
    not pyplot, so no GUI backend is ever selected)."""
    path = Path(path)
    return _atomic(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format=path.suffix[1:] or "png"))
