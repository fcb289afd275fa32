"""Reading torch files without running code from them.

``torch.save`` files are pickles, and unpickling can call any importable function
(``os.system`` included). :func:`load_torch` therefore uses ``torch.load(weights_only=True)``,
which builds only tensors and plain containers, and allows on top of that exactly the NumPy
globals that plain arrays, scalars and their dtypes need (training scripts often save
``np.random.get_state()`` or metric arrays beside the weights). Anything else is refused with
an error naming the globals the file would import; the caller decides how a user may opt in.
"""

from __future__ import annotations

import functools
import io
import logging
import os
import pickle
import pickletools
import re
import zipfile
from pathlib import Path
from typing import Any

import torch

log = logging.getLogger(__name__)

# The dtype characters of plain (non-object) arrays: bool, signed and unsigned integers of every
# width, half/single/double/long-double floats and complex, fixed-width str and bytes.
_PLAIN_DTYPES = "?bhilqpBHILQPefdgFDGUS"
# Opcodes that push a string the next STACK_GLOBAL may take as module or name.
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING",
               "BINSTRING", "SHORT_BINSTRING"}


class UnsafeFileError(ValueError):
    """A file that would import globals outside the allowlist when unpickled.

    Attributes:
        path: the file.
        globals: the refused globals as ``module.name`` (may be empty if none could be named).
    """

    def __init__(self, message: str, path: Path, found: list[str]):
        super().__init__(message)
        self.path = path
        self.globals = found


@functools.cache
def numpy_safe_globals() -> tuple[Any, ...]:
    """The NumPy globals plain arrays, scalars and dtypes unpickle with, for
    ``torch.serialization.safe_globals``: array and scalar reconstruction (under both the
    NumPy 1 ``numpy.core`` and NumPy 2 ``numpy._core`` names, so files saved by either load),
    ``ndarray``, ``dtype`` and the dtype classes of non-object dtypes."""
    import numpy as np

    try:
        from numpy._core import multiarray
    except ImportError:  # NumPy 1
        from numpy.core import multiarray
    out: list[Any] = []
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        out += [(multiarray._reconstruct, f"{module}._reconstruct"),
                (multiarray.scalar, f"{module}.scalar")]
    out += [np.ndarray, np.dtype]
    # torch only lets the unpickler set the state of objects whose class is allowlisted; a
    # dtype's state is set, so each plain dtype's class must be listed
    out += sorted({type(np.dtype(c)) for c in _PLAIN_DTYPES}, key=lambda t: t.__name__)
    return tuple(out)


def _allowed_names() -> set[str]:
    """Names of the globals a weights-only load with :func:`numpy_safe_globals` accepts."""
    names = set()
    for g in numpy_safe_globals():
        names.add(g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}")
    try:  # torch's own allowlist (tensor rebuilding, storages, OrderedDict, ...)
        from torch._weights_only_unpickler import _get_allowed_globals

        names |= set(_get_allowed_globals())
    except Exception:  # a torch without it: fall back to its public prefixes
        names |= {"collections.OrderedDict", "builtins.set", "builtins.frozenset"}
    return names


def _pickles(path: Path) -> list[bytes]:
    """The pickle streams of a torch file: ``data.pkl`` of a zip archive, else the whole file
    (the legacy format, or a bare pickle, holds several pickles one after another)."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            return [z.read(n) for n in z.namelist() if n.endswith(".pkl")]
    return [path.read_bytes()]


def pickle_globals(path: str | os.PathLike) -> list[str]:
    """Every global (``module.name``) the pickles in a torch file import, read statically.

    Nothing is unpickled: the opcodes are disassembled and the module and name strings a
    ``STACK_GLOBAL`` takes are tracked through the memo, so protocol 2 to 5 pickles are covered.
    A ``STACK_GLOBAL`` whose names are computed while unpickling reads ``<computed>``.
    """
    found: set[str] = set()
    for blob in _pickles(Path(path)):
        stream = io.BytesIO(blob)
        while stream.tell() < len(blob):
            start = stream.tell()
            try:
                found |= _globals_of_one_pickle(stream)
            except Exception:  # past the last pickle (raw storage bytes) or not a pickle
                break
            if stream.tell() == start:
                break
    return sorted(found)


def _globals_of_one_pickle(stream: io.BytesIO) -> set[str]:
    found: set[str] = set()
    memo: dict[int, Any] = {}
    pushed: list[Any] = []  # recent values pushed: strings where known, else None
    for op, arg, _ in pickletools.genops(stream):
        name = op.name
        if name in ("GLOBAL", "INST"):
            module, _, qual = str(arg).partition(" ")
            found.add(f"{module}.{qual}")
            pushed.append(None)
        elif name == "STACK_GLOBAL":
            module, qual = (pushed[-2], pushed[-1]) if len(pushed) >= 2 else (None, None)
            ok = isinstance(module, str) and isinstance(qual, str)
            found.add(f"{module}.{qual}" if ok else "<computed>")
            del pushed[-2:]
            pushed.append(None)
        elif name in _STRING_OPS:
            pushed.append(arg.decode("latin-1") if isinstance(arg, bytes) else arg)
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            pushed.append(memo.get(arg))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT"):
            memo[arg] = pushed[-1] if pushed else None
        elif name == "MEMOIZE":
            memo[len(memo)] = pushed[-1] if pushed else None
        elif op.stack_after:
            pushed.append(None)
        del pushed[:-4]  # only the last two matter
    return found


def load_torch(path: str | os.PathLike, *, trust: bool = False,
               opt_in: str = "only if you trust it, load it with weights_only=False") -> Any:
    """``torch.load`` a file onto the CPU without running code from it.

    Args:
        path: a ``torch.save`` file (zip or legacy format).
        trust: load with ``weights_only=False`` instead (runs whatever the pickle calls; logged).
        opt_in: how the caller's user loads a refused file anyway, appended to the error.

    Raises:
        UnsafeFileError: the file imports a global outside torch's and :func:`numpy_safe_globals`'
            allowlists; the message names them.
        ValueError: the file is not a readable torch file.
    """
    path = Path(path)
    if trust:
        log.warning("loading %s with weights_only=False (trusted): its pickle may run code", path)
        return torch.load(path, map_location="cpu", weights_only=False)
    try:
        with torch.serialization.safe_globals(list(numpy_safe_globals())):
            return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        detail = _weights_only_detail(err)
        try:
            found = [g for g in pickle_globals(path) if g not in _allowed_names()]
        except Exception:  # unreadable as a whole: report what torch said
            found = []
        found = found or _built_class(detail)
        hint = opt_in[:1].upper() + opt_in[1:]
        if found:
            more = f" and {len(found) - 8} more" if len(found) > 8 else ""
            listed = ", ".join(found[:8]) + more
            raise UnsafeFileError(
                f"refused to load {path}: unpickling it would use {listed}, outside the allowlist "
                f"(tensors, plain containers, plain NumPy arrays), so loading it could run "
                f"arbitrary code. {hint}.",
                path, found,
            ) from None
        raise UnsafeFileError(f"refused to load {path}: it is not a file of plain tensors "
                              f"({detail}). {hint}.", path, []) from None
    except FileNotFoundError:
        raise
    except Exception as err:  # a truncated zip, garbage bytes, an unknown legacy layout
        first = (str(err).strip().splitlines() or [""])[0]
        raise ValueError(
            f"cannot read {path} as a torch file: {type(err).__name__}: {first}"
        ) from err


def _weights_only_detail(err: BaseException) -> str:
    """The line of torch's weights-only error that says what was refused."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    for i, line in enumerate(lines):
        if "WeightsUnpickler error:" in line:
            rest = line.split("WeightsUnpickler error:", 1)[1].strip()
            if not rest and i + 1 < len(lines):  # the reason may be on the next line
                rest = lines[i + 1]
            return rest.split(" Please use")[0] or line
    return lines[0] if lines else type(err).__name__


def _built_class(detail: str) -> list[str]:
    """The class torch refused to set the state of (``... but got <class 'X'>``), if named."""
    match = re.search(r"but got <class '([^']+)'>", detail)
    return [match.group(1)] if match else []
