"""Plumbing shared by the parameter-space probes (interpolation, autoneb, curve, surface,
intrinsic_dim): the second endpoint of a pairwise probe, a model evaluated at arbitrary flat
parameters (with BatchNorm statistics recomputed there), mini-batch losses and data streams,
and the problem the curved-path probes (autoneb, curve) share.

BatchNorm: the running statistics stored in a checkpoint belong to that checkpoint's weights;
at any other point of parameter space they are stale. Following Garipov et al. (2018), "Loss
Surfaces, Mode Connectivity, and Fast Ensembling of DNNs", Sec. 4, and Entezari et al. (2022),
"The Role of Permutation Invariance in Linear Mode Connectivity of Neural Networks", they are
recomputed at every evaluated point on unaugmented training batches (:func:`recompute_bn`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from torch import Tensor, nn

from losslands.data.datamodule import DeviceLoader
from losslands.flat import as_batches, flat_loss, get_flat, set_flat
from losslands.paths import linear_interpolation
from losslands.probes.base import ProbeContext

Batch = tuple[Tensor, Tensor]


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds a BatchNorm layer that tracks running statistics."""
    return any(
        isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
        for m in model.modules()
    )


@torch.no_grad()
def recompute_bn(model: nn.Module, batches: Iterable[Batch]) -> bool:
    """Reset every BatchNorm's running statistics and re-estimate them on ``batches``.

    Cumulative averaging (``momentum=None``): the running mean (variance) becomes the plain
    average over the batches of the batch means (unbiased batch variances), independent of the
    order and of the old statistics. The model's train/eval flags and momenta are restored.

    Returns:
        False (and does nothing) when the model has no BatchNorm.
    """
    norms = [
        m
        for m in model.modules()
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats
    ]
    if not norms:
        return False
    modes = [(m, m.training) for m in model.modules()]
    momenta = [m.momentum for m in norms]
    try:
        for m in norms:
            m.reset_running_stats()
            m.momentum = None
        model.train()
        seen = 0
        for x, _ in batches:
            model(x)
            seen += 1
        if seen == 0:
            raise ValueError("recompute_bn got no batches: raise probe.bn_batches")
    finally:
        for m, momentum in zip(norms, momenta, strict=True):
            m.momentum = momentum
        for m, training in modes:
            m.training = training
    return True


def chunks(x: Tensor, y: Tensor, batch_size: int) -> list[Batch]:
    """``(x, y)`` cut into consecutive batches of at most ``batch_size`` (bounds memory)."""
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    return [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]


class PointEvaluator:
    """Evaluates a network at arbitrary flat parameters ``theta`` on fixed data.

    Works on a private copy of ``model`` (in eval mode); the caller's model is never changed.
    With ``bn_data``, the copy's BatchNorm statistics are recomputed at every new ``theta``
    (cached, so metrics on several data sets at the same point cost one recomputation);
    without, the statistics stored in ``model`` are used everywhere.

    Args:
        model: architecture, and the buffers used when there is no BatchNorm.
        loss_fn: mean loss ``loss_fn(logits, targets)``.
        bn_data: unaugmented training batches for :func:`recompute_bn` (see :func:`bn_data`).
    """

    def __init__(
        self,
        model: nn.Module,
        loss_fn: Callable[[Tensor, Tensor], Tensor],
        bn_data: list[Batch] | None = None,
    ) -> None:
        self.model = copy.deepcopy(model).eval()
        self.loss_fn = loss_fn
        self.bn_data = bn_data if has_batchnorm(model) and bn_data else None
        self._theta: Tensor | None = None

    def at(self, theta: Tensor) -> nn.Module:
        """The private model with parameters ``theta`` (and recomputed BatchNorm statistics)."""
        theta = theta.detach()
        if self._theta is None or not torch.equal(self._theta, theta):
            set_flat(self.model, theta)
            if self.bn_data is not None:
                recompute_bn(self.model, self.bn_data)
            self._theta = theta.clone()
        return self.model

    @torch.no_grad()
    def metrics(self, theta: Tensor, batches: list[Batch]) -> dict[str, float]:
        """Sample-weighted mean loss and accuracy at ``theta`` over ``batches``."""
        model = self.at(theta)
        total = sum(int(x.shape[0]) for x, _ in batches)
        loss, correct = 0.0, 0
        for x, y in batches:
            logits = model(x)
            loss += float(self.loss_fn(logits, y)) * (x.shape[0] / total)
            correct += int((logits.argmax(1) == y).sum())
        return {"loss": loss, "acc": correct / total}

    def loss(self, batches: list[Batch]) -> Callable[[Tensor], Tensor]:
        """Differentiable ``f(theta)``: mean loss over ``batches`` (statistics refreshed first)."""
        f = flat_loss(self.model, self.loss_fn, batches)

        def at_theta(theta: Tensor) -> Tensor:
            self.at(theta)  # refreshes the buffers that ``f`` reads, in place
            return f(theta)

        return at_theta


def batch_loss(
    model: nn.Module, loss_fn: Callable[[Tensor, Tensor], Tensor]
) -> Callable[[Tensor, Batch], Tensor]:
    """Differentiable mini-batch loss ``f(theta, (x, y))`` in training mode.

    Runs a private copy in ``train()`` mode, so BatchNorm normalises with batch statistics, as
    in training (its running statistics, updated in the copy, are never read).
    """
    train_model = copy.deepcopy(model).train()
    return lambda theta, batch: flat_loss(train_model, loss_fn, as_batches(batch))(theta)


class EpochBatches:
    """Re-iterable over a :class:`DeviceLoader`: every pass draws the next epoch's order.

    A plain loader repeats epoch 0 on every pass; methods that cycle through their batches
    (AutoNEB, Bézier curves, subspace training) should see fresh shuffles instead.
    """

    def __init__(self, loader: DeviceLoader) -> None:
        self.loader = loader
        self._epoch = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        # A generator: the epoch is only claimed when the first batch is requested.
        self.loader.set_epoch(self._epoch)
        self._epoch += 1
        yield from self.loader


def train_batches(
    ctx: ProbeContext, batch_size: int, *, seed: int, augment: bool = False, n: int | None = None
) -> EpochBatches:
    """Shuffled training mini-batches (the first ``n`` images of the training split, or all)."""
    x, y = ctx.datamodule.train_x, ctx.datamodule.train_y
    if n is not None:
        if not 1 <= n <= x.shape[0]:
            raise ValueError(f"{n} training samples requested, the training split has {x.shape[0]}")
        x, y = x[:n], y[:n]
    return EpochBatches(DeviceLoader(x, y, batch_size, shuffle=True, augment=augment, seed=seed))


def bn_data(ctx: ProbeContext, n_batches: int, *, required: bool = True) -> list[Batch] | None:
    """The first ``n_batches`` unaugmented training batches (of ``data.batch_size``) for
    :func:`recompute_bn`; None when the model has no BatchNorm or ``n_batches`` is 0.

    Raises:
        ValueError: the model has BatchNorm, ``n_batches < 1`` and ``required``.
    """
    if not has_batchnorm(ctx.model):
        return None
    if n_batches < 1:
        if required:
            raise ValueError(
                "the model has BatchNorm, whose statistics must be recomputed at every "
                "evaluated point: set probe.bn_batches >= 1"
            )
        return None
    batches = []
    for batch in ctx.datamodule.iter_batches("train", int(ctx.cfg.data.batch_size)):
        if len(batches) >= n_batches:
            break
        batches.append(batch)
    return batches


def split_batches(ctx: ProbeContext, split: str, n: int | None = None) -> list[Batch]:
    """The first ``n`` samples (all when None) of an unaugmented split, in eval-size batches."""
    out, seen = [], 0
    for x, y in ctx.datamodule.iter_batches(split, int(ctx.cfg.data.eval_batch_size)):
        if n is not None and seen + len(x) > n:
            x, y = x[: n - seen], y[: n - seen]
        if len(x):
            out.append((x, y))
        seen += len(x)
        if n is not None and seen >= n:
            break
    if not out:
        raise ValueError(f"no {split} data: check data.* and the probe's sample counts")
    return out


def probe_batches(ctx: ProbeContext, n: int) -> list[Batch]:
    """The fixed probe subset 0 of ``n`` training images, in eval-size batches."""
    x, y = ctx.probe_data(int(n), index=0)
    return chunks(x, y, int(ctx.cfg.data.eval_batch_size))


@dataclass
class Endpoints:
    """The two ends of a pairwise probe: this job's model (``a``) and another trained one."""

    model_b: nn.Module
    theta_a: Tensor
    theta_b: Tensor
    name_a: str
    name_b: str

    @property
    def pair(self) -> str:
        return f"{self.name_a}-{self.name_b}"


def other_overrides(ctx: ProbeContext, cfg: DictConfig) -> dict[str, Any]:
    """The training overrides naming the second endpoint: ``probe.other``, or, when that is
    null, ``{"optimizer": probe.pairs[<this job's optimizer>]}``."""
    other = cfg.get("other")
    if other is None:
        own = str(ctx.cfg.optimizer.name)
        pairs = cfg.get("pairs") or {}
        if own not in pairs:
            raise ValueError(
                f"no partner for optimizer {own!r} in probe.pairs {dict(pairs)}: add one or set "
                "probe.other, e.g. probe.other.optimizer=sgd"
            )
        return {"optimizer": str(pairs[own])}
    if isinstance(other, DictConfig):
        other = OmegaConf.to_container(other, resolve=True)
    if not isinstance(other, Mapping) or not other:
        raise ValueError(
            f"probe.other must be a non-empty mapping of training overrides, got {other!r}; "
            "e.g. probe.other.optimizer=sgd or probe.other.seed=1"
        )
    return dict(other)


def load_endpoints(ctx: ProbeContext, cfg: DictConfig) -> Endpoints:
    """Load (training if needed) the second endpoint named by :func:`other_overrides`."""
    if ctx.load_other is None:
        raise ValueError(
            "this probe needs a second trained model: run it through `python -m losslands`, or "
            "give ProbeContext a load_other"
        )
    overrides = other_overrides(ctx, cfg)
    model_b = ctx.load_other(overrides).to(ctx.device).float().eval()
    theta_a, theta_b = get_flat(ctx.model), get_flat(model_b)
    if theta_a.shape != theta_b.shape:
        raise ValueError(
            f"probe.other {overrides} gives a different architecture: keep model= fixed"
        )
    if torch.equal(theta_a, theta_b):
        raise ValueError(
            f"probe.other {overrides} selects the same trained weights as this job: choose "
            "another optimizer or seed"
        )
    name_b = overrides.get("optimizer")
    name_b = name_b if isinstance(name_b, str) else str(ctx.cfg.optimizer.name)
    return Endpoints(model_b, theta_a, theta_b, str(ctx.cfg.optimizer.name), name_b)


def line_profile(
    loss: Callable[[Tensor], Tensor | float],
    theta_a: Tensor,
    theta_b: Tensor,
    n_points: int,
    progress: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Loss at ``n_points`` equally spaced points of the straight segment from ``theta_a`` to
    ``theta_b`` and its barrier as defined for curved paths (AutoNEB, Bézier):
    ``max_t L(t) - max(L(0), L(1))``, so curves and the line compare on one scale."""
    if n_points < 2:
        raise ValueError(f"a line profile needs >= 2 points, got {n_points}")
    t = torch.linspace(0.0, 1.0, n_points, dtype=torch.float64)
    res = linear_interpolation(loss, theta_a, theta_b, alphas=t, progress=progress)
    losses = res.losses
    return {
        "t": res.alphas.tolist(),
        "losses": losses.tolist(),
        "barrier": float(losses.max()) - max(res.loss_a, res.loss_b),
    }


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


@dataclass
class PathProblem:
    """What the curved-path probes (AutoNEB, Bézier curve) optimise and measure.

    Attributes:
        ends: the two endpoints.
        batch_loss: mini-batch training loss ``f(theta, batch)`` (see :func:`batch_loss`).
        train_batches: shuffled, unaugmented training mini-batches, a fresh order every pass.
        eval_batches: the fixed train probe subset.
        eval_loss: differentiable loss on ``eval_batches`` (BatchNorm recomputed at every point).
    """

    ends: Endpoints
    batch_loss: Callable[[Tensor, Batch], Tensor]
    train_batches: EpochBatches
    eval_batches: list[Batch]
    eval_loss: Callable[[Tensor], Tensor]

    @property
    def n_eval(self) -> int:
        """Number of samples in the evaluation set."""
        return sum(len(x) for x, _ in self.eval_batches)

    def optimise(
        self,
        ctx: ProbeContext,
        method: Callable[..., Any],
        n_steps: int,
        desc: str,
        /,
        **kwargs: Any,
    ) -> Any:
        """``method(batch_loss, theta_a, theta_b, train_batches, eval_loss=..., **kwargs)`` (the
        shared signature of :func:`losslands.paths.autoneb` and
        :func:`losslands.paths.bezier_curve`) under a progress bar of ``n_steps`` steps.
        Positional-only, so ``kwargs`` may hold any of the method's own keywords."""
        with StepProgress(ctx, n_steps, desc) as bar:
            return method(
                self.batch_loss,
                self.ends.theta_a,
                self.ends.theta_b,
                self.train_batches,
                eval_loss=self.eval_loss,
                progress=bar,
                **kwargs,
            )

    def summary(self, res: Any, line: dict[str, Any]) -> dict[str, Any]:
        """The result keys every curved-path probe reports first: the partner, the pair, the
        path's barrier and saddle position (``res``) and the straight line's barrier."""
        return {
            "other": self.ends.name_b,
            "pair": self.ends.pair,
            "barrier": res.barrier,
            "linear_barrier": line["barrier"],
            "saddle_t": res.saddle_t,
        }

    def straight_line(self, ctx: ProbeContext, n_points: int) -> dict[str, Any]:
        """:func:`line_profile` of the evaluation loss between the endpoints, with a progress bar."""
        with StepProgress(ctx, n_points, "straight line") as bar:
            return line_profile(
                self.eval_loss, self.ends.theta_a, self.ends.theta_b, n_points, progress=bar
            )


def path_problem(ctx: ProbeContext, cfg: DictConfig) -> PathProblem:
    """The :class:`PathProblem` that ``cfg`` describes: ``probe.other`` (or ``probe.pairs``),
    ``bn_batches``, ``n_samples``, ``batch_size`` (null: ``data.batch_size``) and ``seed``."""
    ends = load_endpoints(ctx, cfg)
    evaluator = PointEvaluator(ctx.model, ctx.loss_fn, bn_data(ctx, int(cfg.bn_batches)))
    eval_batches = probe_batches(ctx, int(cfg.n_samples))
    batch_size = int(cfg.batch_size or ctx.cfg.data.batch_size)
    return PathProblem(
        ends=ends,
        batch_loss=batch_loss(ctx.model, ctx.loss_fn),
        train_batches=train_batches(ctx, batch_size, seed=int(cfg.seed)),
        eval_batches=eval_batches,
        eval_loss=evaluator.loss(eval_batches),
    )
