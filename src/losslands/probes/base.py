"""The probe protocol: every probe is a plain-Python module on one shape.

A probe module ``losslands.probes.<name>`` defines::

    @dataclass
    class Config(ProbeConfig): ...                           # its options, checked once
    INFO = ProbeInfo(title=..., scalars={...}, table=[...])  # what the report shows
    def run(ctx: ProbeContext, cfg: Config) -> dict          # JSON-able result
    def scalars(result: dict) -> dict[str, float]            # headline numbers (optional)
    def plot(result: dict) -> matplotlib.figure.Figure       # optional
    def tables(result: dict) -> {name: (columns, rows)}      # W&B tables (optional)
    def lines(result: dict) -> {name: (xname, {series: (xs, ys)})}  # W&B line plots (optional)

``run`` gets the model (eval mode, float32, on ``ctx.device``) and everything else by name
through :class:`ProbeContext`: the data, batch sizes, the training recipe's facts, factories.
Nothing under ``losslands.probes`` imports Hydra, OmegaConf or Lightning; the CLI builds the
context from its config (:mod:`losslands.task`) and a notebook builds it from tensors
(:func:`losslands.probes.run`). ``run`` writes no files: :func:`losslands.probes.runner.run_probe`
writes ``probes/<name>.json`` and ``.png`` atomically.

Long probes save finished pieces with ``ctx.partial.cached(piece, compute)``: the runner backs
the store with ``probes/<name>.partial.json`` (written atomically after every piece, tagged with
the probe key, deleted once the probe completes), so a killed job resumes where it stopped.

Over ~300 lines: the protocol's parts (typed config, report info, context, piece stores,
registry) are read together by every probe author.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import math
import os
import pkgutil
import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import torch
from filelock import FileLock
from torch import Tensor, nn
from tqdm.auto import tqdm

from losslands.batchnorm import has_batchnorm
from losslands.curvature.distributed import AllReduced, Shard
from losslands.curvature.operators import GGNOperator, HessianOperator
from losslands.data.loader import EpochBatches, TensorSplits
from losslands.io import read_json, write_json

SCHEMA = 1
Batch = tuple[Tensor, Tensor]
# Modules of this package that are not probes.
NOT_PROBES = {"base", "runner"}


@dataclass(frozen=True)
class Scalar:
    """A headline number a probe reports.

    Attributes:
        definition: one line saying how it is computed.
        unit: its unit ("" for dimensionless).
        null: what a null value means, in the words a report table gives it ("3 not reached").
    """

    definition: str
    unit: str = ""
    null: str = "not finite"


@dataclass(frozen=True)
class ProbeInfo:
    """What the report shows of a probe.

    Attributes:
        title: the report section's title.
        scalars: every scalar the probe reports, by name (pattern names like ``acc_d<d>`` for
            families). The report's definitions list is built from these.
        table: the scalars that form the report's table, in order; families matching a
            ``table_prefixes`` entry follow them.
        table_prefixes: prefixes of scalar families appended to the table (e.g. ``acc_d``).
        definition: a paragraph for the report's definitions section (method and citations).
        pairwise: results describe a pair of solutions (their ``barrier`` forms the paths table).
        order: position among the report's sections (lower first).
    """

    title: str
    scalars: Mapping[str, Scalar]
    table: Sequence[str] = ()
    table_prefixes: Sequence[str] = ()
    definition: str = ""
    pairwise: bool = False
    order: int = 100


class ConfigError(ValueError):
    """A probe option outside its allowed range."""


@dataclass
class ProbeConfig:
    """Base of every probe's typed config: ``check`` runs the range checks after construction.

    Subclasses declare their options as fields (the YAML file ``conf/probe/<name>.yaml`` is
    validated against them) and override :meth:`check`, using :meth:`at_least` and friends so
    every bad value gets one error naming the key and the allowed range.
    """

    name: str = ""

    def __post_init__(self) -> None:
        self.check()

    def check(self) -> None:
        """Raise :class:`ConfigError` for a value outside its range."""

    def at_least(self, key: str, low: int | float, *, integer: bool = True) -> None:
        """``probe.<key>`` must be a number (an integer unless told) ``>= low``."""
        value = getattr(self, key)
        kind = "an integer" if integer else "a number"
        if not _is_number(value, integer) or value < low:
            raise ConfigError(f"probe.{key}={value!r} must be {kind} >= {low}")

    def positive(self, key: str) -> None:
        """``probe.<key>`` must be a finite number ``> 0``."""
        value = getattr(self, key)
        if not _is_number(value, False) or not value > 0 or not math.isfinite(value):
            raise ConfigError(f"probe.{key}={value!r} must be a finite number > 0")

    def one_of(self, key: str, allowed: Sequence[Any]) -> None:
        """``probe.<key>`` must be one of ``allowed``."""
        value = getattr(self, key)
        if value not in allowed:
            raise ConfigError(f"probe.{key}={value!r} must be one of {tuple(allowed)}")

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON-able values (the ``config`` field of a result)."""
        return dataclasses.asdict(self)


def _is_number(value: Any, integer: bool) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) if integer else isinstance(value, int | float)


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

    def lock(self, piece: str) -> contextlib.AbstractContextManager:
        """No lock: one job owns its pieces (the interface :meth:`PieceStore.lock` shares)."""
        return contextlib.nullcontext()

    def clear(self) -> None:
        """Forget every piece and delete the file."""
        self.pieces = {}
        if self.path is not None and os.path.exists(self.path):
            os.remove(self.path)


class PieceStore:
    """Finished pieces kept across probe configs, keyed by what each depends on (a hash the
    probe computes), one JSON file each, written atomically: a search extended or refined
    later reuses every training it already did.

    Args:
        root: the folder (the CLI uses ``<cache>/pieces``, shared by every training).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = root

    def _path(self, key: str) -> str:
        return os.path.join(self.root, f"{key}.json")

    def get(self, key: str) -> Any | None:
        """The stored value, or None (also for an unreadable file, which is recomputed)."""
        path = self._path(key)
        if not os.path.exists(path):
            return None
        try:
            return read_json(path)
        except ValueError:
            return None

    def put(self, key: str, value: Any) -> None:
        """Store ``value`` under ``key`` (replacing what was there)."""
        write_json(self._path(key), value, strict=False)

    def lock(self, key: str) -> FileLock:
        """An inter-process lock on ``key``: hold it from reading a value to storing its update."""
        os.makedirs(self.root, exist_ok=True)
        return FileLock(self._path(key) + ".lock")


@dataclass
class ProbeContext:
    """Everything a probe may use, by name.

    Attributes:
        model: the trained model, in eval mode, on ``device``.
        data: the train and test splits (:class:`~losslands.data.loader.TensorSplits`).
        device: where to compute.
        loss_fn: batch-mean loss (cross-entropy).
        batch_size: the training mini-batch size (noise scale ``C/B``; path and subspace
            training batches).
        eval_batch_size: batch size of forward-only passes over a split.
        augment: whether training batches were augmented.
        optimizer_name: the training optimizer's name (pairwise partners, labels).
        coupled_weight_decay: the L2 coefficient that is part of the optimised objective
            (0 for AdamW's decoupled decay): see :func:`losslands.training.coupled_weight_decay`.
        seed: the training seed (data order of subspace training).
        epochs: the training epochs (the budget of subspace training), if known.
        model_name: the architecture's name (records).
        make_model: a fresh model at the training run's own initialisation.
        make_optimizer: ``params -> optimizer`` with the training run's hyper-parameters.
        load_other: ``overrides -> nn.Module``: another trained model, e.g.
            ``{"optimizer": "sgd"}`` for the second endpoint of a pairwise probe.
        train_key: the training cache key of ``model``.
        init_key: the key of what ``make_model()`` and the training data depend on (model, data,
            seed), shared by every optimizer's job at one seed; None when unknown.
        train_summary: the training summary (history, final metrics).
        quiet: hide progress bars.
        partial: finished pieces of the running probe (see :class:`PartialResults`).
        shard: this process's place in a data-parallel run (``torchrun``/SLURM; see
            :mod:`losslands.curvature.distributed`), or None for one process. With it,
            :meth:`hessian` builds the operator on this rank's part of the samples and sums the
            products over the ranks, and the path probes' evaluators share out their samples.
        store: pieces kept across probe configs (see :class:`PieceStore`), or None.
        others: the trainings ``load_other`` returned, as ``{"train_hash", "final"}`` (the
            record keeps them, so the report can check them against those models' own jobs).
    """

    model: nn.Module
    data: TensorSplits
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    loss_fn: nn.Module = field(default_factory=nn.CrossEntropyLoss)
    batch_size: int = 128
    eval_batch_size: int = 1000
    augment: bool = False
    optimizer_name: str = ""
    coupled_weight_decay: float = 0.0
    seed: int = 0
    epochs: int | None = None
    model_name: str = ""
    make_model: Callable[[], nn.Module] | None = None
    make_optimizer: Callable[[Iterable[Tensor]], torch.optim.Optimizer] | None = None
    load_other: Callable[[Mapping[str, Any]], nn.Module] | None = None
    train_key: str = ""
    init_key: str | None = None
    train_summary: Mapping[str, Any] = field(default_factory=dict)
    quiet: bool = False
    partial: PartialResults = field(default_factory=PartialResults)
    store: PieceStore | None = None
    shard: Shard | None = None
    others: list[dict[str, Any]] = field(default_factory=list)

    def probe_data(self, n: int, index: int = 0) -> Batch:
        """The fixed, unaugmented probe subset number ``index`` of size ``n`` on ``device``."""
        x, y = self.data.probe_subset(int(n), index=index)
        return x.to(self.device), y.to(self.device)

    def probe_batches(self, n: int) -> list[Batch]:
        """Probe subset 0 of ``n`` training images, in eval-size batches."""
        x, y = self.probe_data(n, index=0)
        return chunks(x, y, self.eval_batch_size)

    def split_batches(self, split: str, n: int | None = None) -> list[Batch]:
        """The first ``n`` samples (all when None) of an unaugmented split, in eval-size batches."""
        out, seen = [], 0
        for x, y in self.data.iter_batches(split, self.eval_batch_size):
            if n is not None and seen + len(x) > n:
                x, y = x[: n - seen], y[: n - seen]
            if len(x):
                out.append((x, y))
            seen += len(x)
            if n is not None and seen >= n:
                break
        if not out:
            raise ValueError(f"no {split} data: check the data and the probe's sample counts")
        return out

    def train_batches(
        self, batch_size: int | None = None, *, seed: int, augment: bool = False,
        n: int | None = None,
    ) -> EpochBatches:
        """Shuffled training mini-batches (of ``batch_size``, default the training one) over the
        first ``n`` training images (all when None), a fresh order every pass."""
        return EpochBatches(self.data.loader(
            "train", batch_size or self.batch_size, shuffle=True, augment=augment, seed=seed, n=n
        ))

    def bn_batches(self, n_batches: int, *, required: bool = True) -> list[Batch] | None:
        """The first ``n_batches`` unaugmented training batches (of ``batch_size``) for
        BatchNorm recomputation; None when the model has no BatchNorm or ``n_batches`` is 0.

        Raises:
            ValueError: the model has BatchNorm, ``n_batches < 1`` and ``required``.
        """
        if not has_batchnorm(self.model):
            return None
        if n_batches < 1:
            if required:
                raise ValueError(
                    "the model has BatchNorm, whose statistics must be recomputed at every "
                    "evaluated point: set probe.bn_batches >= 1"
                )
            return None
        batches = []
        for batch in self.data.iter_batches("train", self.batch_size):
            if len(batches) >= n_batches:
                break
            batches.append(batch)
        return batches

    def hessian(
        self, x: Tensor, y: Tensor, *, include_weight_decay: bool = False,
        chunk_size: int | None = None, operator: str = "hessian", seed: int = 0,
    ) -> HessianOperator | GGNOperator | AllReduced:
        """The curvature operator of the mean loss on ``(x, y)``: the Hessian (plus the coupled
        L2 term's ``wd * I`` when ``include_weight_decay``) or, with ``operator``, one of the
        Gauss-Newton family (:class:`~losslands.curvature.operators.GGNOperator`; ``seed``
        draws the Monte-Carlo Fisher's labels).

        With :attr:`shard`, the operator of this rank's part of ``(x, y)``, its products summed
        over the ranks (:class:`~losslands.curvature.distributed.AllReduced`): the same operator
        on every rank. (``fisher_mc`` then draws each shard's labels from its own stream.)"""
        if self.shard is not None:
            local = dataclasses.replace(self, shard=None)
            xs, ys = self.shard.split(x, y)
            op = local.hessian(xs, ys, include_weight_decay=include_weight_decay,
                               chunk_size=chunk_size, operator=operator, seed=seed)
            return AllReduced(op, len(xs) / len(x), self.shard)
        if operator != "hessian":
            if include_weight_decay:
                raise ValueError("probe.include_weight_decay applies to probe.operator=hessian only")
            return GGNOperator(self.model, self.loss_fn, (x, y), kind=operator,
                               chunk_size=chunk_size, seed=seed)
        wd = self.coupled_weight_decay if include_weight_decay else 0.0
        return HessianOperator(self.model, self.loss_fn, (x, y), weight_decay=wd,
                               chunk_size=chunk_size)

    def progress(self, iterable: Iterable, desc: str, total: int | None = None) -> Iterable:
        """Wrap a long loop in a progress bar (redrawn every ``LOG_INTERVAL`` s into a log file)."""
        interval = progress_interval(sys.stderr)
        # tqdm's monitor redraws a quiet bar every maxinterval (10 s): no sooner than interval
        return tqdm(iterable, desc=desc, total=total, disable=self.quiet, leave=False,
                    mininterval=interval, maxinterval=max(interval, 10.0))

    def steps(self, total: int, desc: str) -> StepProgress:
        """A ``progress(...)`` callback for the cores that advances a bar by one per call."""
        return StepProgress(self, total, desc)


# A terminal redraws a bar in place; a log file keeps every redraw (ten a second by default, a
# megabyte per half hour of subspace training), so into a file the bar is written every 30 s.
LOG_INTERVAL = 30.0


def progress_interval(stream: Any, tqdm: type = tqdm) -> float:
    """Seconds between progress-bar redraws on ``stream``: tqdm's 0.1 on a terminal (and in a
    notebook, whose widget redraws in place), ``LOG_INTERVAL`` into a file or pipe."""
    # tqdm.auto's class derives from tqdm.notebook's in Jupyter (whose stderr is no terminal)
    notebook = any(c.__module__ == "tqdm.notebook" for c in tqdm.__mro__)
    if notebook or getattr(stream, "isatty", lambda: False)():
        return 0.1
    return LOG_INTERVAL


class StepProgress:
    """A ``progress(...)`` callback for the cores that advances a progress bar by one per call.

    Use as a context manager so the bar is completed and closed however many calls came.
    """

    def __init__(self, ctx: ProbeContext, total: int, desc: str) -> None:
        self._bar = iter(ctx.progress(range(total), desc=desc, total=total))

    def __call__(self, *_: Any) -> None:
        next(self._bar, None)

    def __enter__(self) -> StepProgress:
        return self

    def __exit__(self, *_: Any) -> None:
        for _ in self._bar:
            pass


def chunks(x: Tensor, y: Tensor, batch_size: int) -> list[Batch]:
    """``(x, y)`` cut into consecutive batches of at most ``batch_size`` (bounds memory)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


def load_probe(name: str) -> ModuleType:
    """Import ``losslands.probes.<name>``; unknown names list the available probes."""
    if name.startswith("_") or name in NOT_PROBES:
        raise ValueError(f"unknown probe {name!r}; choose one of {available_probes()}")
    try:
        mod = importlib.import_module(f"losslands.probes.{name}")
    except ModuleNotFoundError as e:
        if e.name != f"losslands.probes.{name}":
            raise
        raise ValueError(f"unknown probe {name!r}; choose one of {available_probes()}") from None
    for attr in ("run", "Config", "INFO"):
        if not hasattr(mod, attr):
            raise ValueError(f"losslands.probes.{name} defines no {attr} (see losslands.probes.base)")
    return mod


def available_probes() -> list[str]:
    """The probe names (public modules of this package)."""
    import losslands.probes as pkg

    return sorted(
        m.name
        for m in pkgutil.iter_modules(pkg.__path__)
        if not m.name.startswith("_") and m.name not in NOT_PROBES
    )


def make_config(name: str, options: Mapping[str, Any] | None = None) -> ProbeConfig:
    """The typed config of probe ``name`` from plain ``options`` (range-checked).

    Raises:
        ConfigError: an unknown option (the error lists the known ones) or a value out of range.
    """
    cls = load_probe(name).Config
    options = dict(options or {})
    options.setdefault("name", name)
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - known)
    if unknown:
        raise ConfigError(
            f"probe {name!r} has no option(s) {unknown}; its options are {sorted(known - {'name'})}"
        )
    return cls(**options)
