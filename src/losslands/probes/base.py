"""The probe protocol: every probe is a module with ``run`` (optionally ``scalars``, ``plot``,
``tables`` and ``lines``).

A probe module ``losslands.probes.<name>`` defines::

    def run(ctx: ProbeContext, cfg: DictConfig) -> dict       # JSON-able result
    def scalars(result: dict) -> dict[str, float]            # headline numbers (optional)
    def plot(result: dict) -> matplotlib.figure.Figure       # optional
    def tables(result: dict) -> {name: (columns, rows)}      # W&B tables (optional)
    def lines(result: dict) -> {name: (xname, {series: (xs, ys)})}  # W&B line plots (optional)

``run`` gets the trained model (eval mode, float32, on the job's device) and the data through
``ctx``; it must not write files: :func:`losslands.task.run_probe` writes
``probes/<name>.json`` (with ``probe``, ``schema``, the resolved probe config, the training
hash, ``seconds`` and ``status``) and ``probes/<name>.png`` atomically.

Long probes save finished pieces with ``ctx.partial.put(piece, value)`` and look them up with
``ctx.partial.get(piece)`` first: ``run_probe`` backs the store with
``probes/<name>.partial.json`` (written atomically after every piece, tagged with the probe key,
deleted once the probe completes), so a killed job resumes where it stopped. ``lanczos``
(per subset), ``noise`` (per estimate) and ``intrinsic_dim`` (per ``(seed, d)``) do.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Protocol

import torch
from omegaconf import DictConfig
from torch import Tensor, nn
from tqdm.auto import tqdm

from losslands.io import read_json, write_json

SCHEMA = 1


class ProbeModule(Protocol):
    """What a probe module provides (``scalars``, ``plot``, ``tables``, ``lines`` are optional)."""

    def run(self, ctx: ProbeContext, cfg: DictConfig) -> dict[str, Any]: ...


class PartialResults:
    """Finished pieces of a probe, kept so a killed job does not redo them.

    With a ``path``, every :meth:`put` rewrites the file atomically; a file written for another
    probe key (another training run or probe config) is ignored. Without one, pieces live in
    memory only.

    Args:
        path: JSON file backing the store, or ``None``.
        key: the probe key the pieces belong to.
    """

    def __init__(self, path: str | os.PathLike | None = None, key: str = "") -> None:
        self.path = path
        self.key = key
        self.pieces: dict[str, Any] = {}
        if path is not None and os.path.exists(path):
            try:
                saved = read_json(path)
            except ValueError:  # unreadable: start over rather than fail the job
                saved = None
            if isinstance(saved, dict) and saved.get("probe_key") == key:
                self.pieces = dict(saved.get("pieces", {}))

    def get(self, piece: str) -> Any | None:
        """The saved value of ``piece``, or ``None``."""
        return self.pieces.get(piece)

    def put(self, piece: str, value: Any) -> None:
        """Save ``piece`` (JSON-able; NaN and infinities survive) and, with a path, write the store."""
        self.pieces[piece] = value
        if self.path is not None:
            write_json(self.path, {"probe_key": self.key, "pieces": self.pieces}, strict=False)

    def cached(self, piece: str, compute: Callable[[], Any]) -> Any:
        """The saved value of ``piece``, else ``compute()``, saved. A saved value comes back as
        it reads from JSON (lists, not tensors)."""
        saved = self.get(piece)
        if saved is not None:
            return saved
        value = compute()
        self.put(piece, value)
        return value

    def clear(self) -> None:
        """Forget every piece and delete the file."""
        self.pieces = {}
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)


@dataclass
class ProbeContext:
    """Everything a probe may use.

    Attributes:
        model: the trained model, in eval mode, on ``device``.
        datamodule: the job's :class:`~losslands.data.datamodule.CIFAR10DataModule` (set up).
        cfg: the full job config.
        device: where to compute.
        train_hash: the training cache key of ``model``.
        train_summary: the training summary (history, final metrics).
        load_other: ``overrides -> nn.Module``: another trained model, e.g.
            ``{"optimizer": "sgd"}`` for the second endpoint of a pairwise probe (trained or
            reused through the cache).
        loss_fn: mean cross-entropy.
        quiet: hide progress bars.
        partial: finished pieces of the running probe (see :class:`PartialResults`).
    """

    model: nn.Module
    datamodule: Any
    cfg: DictConfig
    device: torch.device
    train_hash: str = ""
    train_summary: Mapping[str, Any] = field(default_factory=dict)
    load_other: Callable[[Mapping[str, Any]], nn.Module] | None = None
    loss_fn: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    quiet: bool = False
    extra: dict[str, Any] = field(default_factory=dict)
    partial: PartialResults = field(default_factory=PartialResults)

    def probe_data(self, n: int, index: int = 0) -> tuple[Tensor, Tensor]:
        """The fixed, unaugmented probe subset number ``index`` of size ``n`` on ``device``."""
        x, y = self.datamodule.probe_subset(int(n), index=index)
        return x.to(self.device), y.to(self.device)

    def progress(self, iterable: Iterable, desc: str, total: int | None = None) -> Iterable:
        """Wrap a long loop in a progress bar."""
        return tqdm(iterable, desc=desc, total=total, disable=self.quiet, leave=False)


def load_probe(name: str) -> ModuleType:
    """Import ``losslands.probes.<name>``; unknown names list the available probes."""
    try:
        mod = importlib.import_module(f"losslands.probes.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"losslands.probes.{name}":
            raise
        raise ValueError(f"unknown probe {name!r}; choose one of {available_probes()}") from None
    if not hasattr(mod, "run"):
        raise ValueError(f"losslands.probes.{name} defines no run(ctx, cfg)")
    return mod


def available_probes() -> list[str]:
    import pkgutil

    import losslands.probes as pkg

    return sorted(m.name for m in pkgutil.iter_modules(pkg.__path__) if m.name not in {"base"})


@torch.no_grad()
def evaluate(model: nn.Module, batches: Iterable[tuple[Tensor, Tensor]], device=None) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over batches (sample-weighted)."""
    loss_fn = nn.CrossEntropyLoss(reduction="sum")
    total, loss, correct = 0, 0.0, 0
    for x, y in batches:
        if device is not None:
            x, y = x.to(device), y.to(device)
        logits = model(x)
        loss += loss_fn(logits.float(), y).item()
        correct += (logits.argmax(1) == y).sum().item()
        total += y.shape[0]
    if total == 0:
        raise ValueError("evaluate() got no data")
    return {"loss": loss / total, "acc": correct / total, "n": total}
