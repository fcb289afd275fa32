"""Run a probe and build its record: the same record from the CLI and from a notebook."""

from __future__ import annotations

import contextlib
import os
import platform
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from losslands.data.loader import TensorSplits
from losslands.io import save_figure, write_json
from losslands.probes.base import (
    SCHEMA,
    PartialResults,
    ProbeConfig,
    ProbeContext,
    load_probe,
    make_config,
)


@contextlib.contextmanager
def tf32(allowed: bool) -> Iterator[None]:
    """Allow (or forbid) TF32 in cuDNN convolutions and CUDA matrix products inside the block;
    the previous settings come back afterwards. No effect on a CPU."""
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = allowed
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def exact_float32() -> contextlib.AbstractContextManager[None]:
    """Run float32 convolutions and matrix products in full float32, not TF32.

    On NVIDIA GPUs since Ampere, cuDNN convolutions default to TF32, which rounds their inputs
    to a 10-bit mantissa (~5e-4 relative), coarser than the probes' eigenvalue tolerances.
    Probes therefore run with TF32 off.
    """
    return tf32(False)


def machine(device: torch.device | None = None) -> dict[str, Any]:
    """Where a result was computed, for its ``seconds`` to be read against: platform, CPU,
    threads, accelerator and library versions."""
    out: dict[str, Any] = {
        "platform": platform.platform(), "processor": _cpu_name(),
        "cpus": os.cpu_count(), "threads": torch.get_num_threads(),
        "python": platform.python_version(), "torch": torch.__version__,
    }
    if device is not None and device.type == "cuda":
        out["gpu"] = torch.cuda.get_device_name(device)
    return out


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:  # Linux names the model here; platform.processor() does not
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class Sink(Protocol):
    """Where a probe's scalars, figure, tables and lines are logged (e.g. W&B and CSV)."""

    def log_scalars(self, prefix: str, scalars: Mapping[str, Any]) -> None: ...
    def log_figure(self, key: str, png: Path) -> None: ...
    def log_table(self, key: str, columns: list[str], rows: list[list[Any]]) -> None: ...
    def log_lines(self, key: str, xname: str, series: Mapping[str, Any]) -> None: ...


class _TimedOther:
    """``ctx.load_other`` with the wall time spent in it (training a missing model included)."""

    def __init__(self, inner: Callable[[Mapping[str, Any]], nn.Module] | None) -> None:
        self.inner, self.seconds = inner, 0.0

    def __call__(self, overrides: Mapping[str, Any]) -> nn.Module:
        assert self.inner is not None
        start = time.perf_counter()
        try:
            return self.inner(overrides)
        finally:
            self.seconds += time.perf_counter() - start


def run_probe(
    name: str,
    ctx: ProbeContext,
    cfg: ProbeConfig,
    out: str | Path | None = None,
    sink: Sink | None = None,
    pkey: str = "",
) -> dict[str, Any]:
    """Run probe ``name`` on ``ctx`` and return its record.

    The record holds ``probe``, ``schema``, the probe ``config``, the training key, the probe
    key, ``optimizer``, ``seed``, ``model``, ``status``, ``seconds`` (the probe's own wall time),
    ``other_seconds`` (loading, or training, a pairwise probe's second model: training time
    belongs to that model, not to the probe), and (once completed)
    ``result``, ``scalars`` and, for a pairwise probe, ``others`` (the second model's training
    key and final metrics). With ``out``, it is written to ``out/probes/<name>.json`` (also
    on failure) with the figure beside it, and finished pieces go to ``<name>.partial.json``
    (only with a probe key, which identifies them).

    In a data-parallel run (``ctx.shard``) every rank runs the probe and only rank 0 writes
    files and logs; the other ranks start from rank 0's finished pieces, so all resume alike.
    """
    mod = load_probe(name)
    record: dict[str, Any] = {
        "probe": name, "schema": SCHEMA, "config": cfg.to_dict(),
        "train_hash": ctx.train_key, "probe_key": pkey,
        "optimizer": ctx.optimizer_name, "seed": ctx.seed, "model": ctx.model_name,
        "machine": machine(ctx.device),
    }
    main = ctx.shard is None or ctx.shard.is_main
    path = Path(out) / "probes" / f"{name}.json" if out is not None and main else None
    ctx.partial = PartialResults(path.with_suffix(".partial.json") if path and pkey else None, pkey)
    if ctx.shard is not None:
        ctx.partial.pieces = ctx.shard.broadcast_object(ctx.partial.pieces)
        sink = sink if main else None
    start, other = time.perf_counter(), _TimedOther(ctx.load_other)
    ctx.load_other = other if ctx.load_other is not None else None
    try:
        with exact_float32():
            result = mod.run(ctx, cfg)
    except Exception:
        record.update(status="failed", seconds=time.perf_counter() - start - other.seconds,
                      other_seconds=other.seconds, error=traceback.format_exc())
        if path is not None:
            write_json(path, record)
        raise
    finally:
        ctx.load_other = other.inner
    record.update(status="completed", seconds=time.perf_counter() - start - other.seconds,
                  other_seconds=other.seconds, result=result)
    if ctx.others:
        record["others"] = list(ctx.others)
    scalars = mod.scalars(result) if hasattr(mod, "scalars") else {}
    record["scalars"] = scalars
    if path is not None:
        write_json(path, record)
    ctx.partial.clear()
    png = None
    if path is not None and hasattr(mod, "plot"):
        fig = mod.plot(result)
        if fig is not None:
            png = save_figure(path.with_suffix(".png"), fig)
    if sink is not None:
        if png is not None:
            sink.log_figure(f"{name}/figure", png)
        sink.log_scalars(name, scalars)
        for tname, (cols, rows) in (mod.tables(result) if hasattr(mod, "tables") else {}).items():
            sink.log_table(f"{name}/{tname}", cols, rows)
        for lname, (xname, series) in (mod.lines(result) if hasattr(mod, "lines") else {}).items():
            sink.log_lines(f"{name}/{lname}_plot", xname, series)
    return record


def run(
    name: str,
    model: nn.Module,
    train: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor] | None = None,
    *,
    loss_fn: nn.Module | None = None,
    device: str | torch.device | None = None,
    batch_size: int = 128,
    eval_batch_size: int = 1000,
    out: str | Path | None = None,
    quiet: bool = True,
    context: Mapping[str, Any] | None = None,
    **options: Any,
) -> dict[str, Any]:
    """Run probe ``name`` on your own model and tensors, without Hydra or Lightning.

    Args:
        name: a probe name (:func:`~losslands.probes.available_probes`).
        model: any ``nn.Module`` mapping ``train[0]``-like inputs to class logits.
        train: ``(inputs, integer labels)`` used as the training split (probe subsets).
        test: the same for the test split (probes that evaluate on it).
        loss_fn: batch-mean loss (default cross-entropy).
        device: where to compute (default: the model's device).
        batch_size: the mini-batch size the model was trained with.
        eval_batch_size: batch size of forward-only passes.
        out: a folder to write ``probes/<name>.json`` and ``.png`` into, or None.
        quiet: hide progress bars.
        context: more :class:`ProbeContext` fields by name (``make_model``, ``load_other``,
            ``coupled_weight_decay``, ``epochs``, ...), for the probes that need them.
        **options: the probe's options (its ``Config`` fields), checked before any work.

    Returns:
        The record the CLI writes to ``probes/<name>.json``.
    """
    cfg = make_config(name, options)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    data = TensorSplits(train, test, transform=None).to(device)
    ctx = ProbeContext(
        model=model.to(device).float().eval(), data=data, device=device,
        loss_fn=loss_fn or nn.CrossEntropyLoss(), batch_size=batch_size,
        eval_batch_size=eval_batch_size, quiet=quiet, **dict(context or {}),
    )
    return run_probe(name, ctx, cfg, out=out)
