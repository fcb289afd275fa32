"""What the pairwise probes share: the second endpoint, the straight line between the two, and
the problem the curved-path probes (AutoNEB, Bézier curve) optimise.

BatchNorm statistics are recomputed at every evaluated point (:mod:`losslands.batchnorm`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from losslands.data.loader import EpochBatches
from losslands.evaluate import PointEvaluator
from losslands.flat import batch_loss, get_flat
from losslands.paths import linear_interpolation
from losslands.probes.base import ProbeConfig, ProbeContext

Batch = tuple[Tensor, Tensor]
# The reference study's pairs: SGD-Momentum, Momentum-AdamW, AdamW-SGD.
DEFAULT_PAIRS = {"sgd": "momentum", "momentum": "adamw", "adamw": "sgd", "adam": "sgd"}

PATHS_DEFINITION = (
    "**Paths**: linear barrier (Entezari et al. 2022) = max over α ∈ [0,1] of L(θα) − ((1−α)La + "
    "αLb) on the probe subset, BatchNorm statistics recomputed at each α; AutoNEB (Draxler et al. "
    "2018) and quadratic Bézier curves (Garipov et al. 2018): barrier = max loss along the path − "
    "max endpoint loss on a fixed evaluation set. Two optimizers at one seed start from the same "
    "initialisation (the seed fixes it); the cross-seed baseline's two solutions do not."
)


@dataclass
class PairConfig(ProbeConfig):
    """Options every pairwise probe shares.

    Attributes:
        pairs: default partner of each optimizer, read when ``other`` is None.
        other: training overrides naming the second endpoint (e.g. ``{"optimizer": "sgd"}``).
        n_samples: the fixed train probe subset the losses are measured on.
        bn_batches: unaugmented train batches to recompute BatchNorm statistics at every
            evaluated point (ignored without BatchNorm).
    """

    pairs: dict[str, str] = field(default_factory=lambda: dict(DEFAULT_PAIRS))
    other: dict[str, Any] | None = None
    n_samples: int = 5000
    bn_batches: int = 50

    def check(self) -> None:
        self.at_least("n_samples", 1)
        self.at_least("bn_batches", 0)


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


def other_overrides(
    ctx: ProbeContext, other: Mapping[str, Any] | None, pairs: Mapping[str, str] | None
) -> dict[str, Any]:
    """The training overrides naming the second endpoint: ``other``, or, when that is None,
    ``{"optimizer": pairs[<this job's optimizer>]}``."""
    if other is None:
        own = ctx.optimizer_name
        pairs = dict(pairs or {})
        if own not in pairs:
            raise ValueError(
                f"no partner for optimizer {own!r} in probe.pairs {pairs}: add one or set "
                "probe.other, e.g. probe.other.optimizer=sgd"
            )
        return {"optimizer": str(pairs[own])}
    if not isinstance(other, Mapping) or not other:
        raise ValueError(
            f"probe.other must be a non-empty mapping of training overrides, got {other!r}; "
            "e.g. probe.other.optimizer=sgd or +probe.other.seed=1"
        )
    return dict(other)


def load_endpoints(
    ctx: ProbeContext, other: Mapping[str, Any] | None, pairs: Mapping[str, str] | None
) -> Endpoints:
    """Load (training if needed) the second endpoint named by :func:`other_overrides`."""
    if ctx.load_other is None:
        raise ValueError(
            "this probe needs a second trained model: run it through `python -m losslands`, or "
            "give the ProbeContext a load_other (overrides -> model)"
        )
    overrides = other_overrides(ctx, other, pairs)
    model_b = ctx.load_other(overrides).to(ctx.device).float().eval()
    theta_a, theta_b = get_flat(ctx.model), get_flat(model_b)
    if theta_a.shape != theta_b.shape:
        raise ValueError(
            f"probe.other {overrides} gives a different architecture: keep model= fixed"
        )
    if torch.equal(theta_a, theta_b):
        raise ValueError(
            f"probe.other {overrides} selects the same trained weights as this job: choose "
            "another optimizer, seed or weights file"
        )
    name_b, weights = overrides.get("optimizer"), overrides.get("weights")
    if weights:  # another weights file is named after the file
        name_b = Path(str(weights)).stem
    elif not isinstance(name_b, str):
        name_b = ctx.optimizer_name
    return Endpoints(model_b, theta_a, theta_b, ctx.optimizer_name, name_b)


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


@dataclass
class PathProblem:
    """What the curved-path probes (AutoNEB, Bézier curve) optimise and measure.

    Attributes:
        ends: the two endpoints.
        batch_loss: mini-batch training loss ``f(theta, batch)`` (see
            :func:`losslands.flat.batch_loss`).
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
        self, ctx: ProbeContext, method: Callable[..., Any], n_steps: int, desc: str, /,
        **kwargs: Any,
    ) -> Any:
        """``method(batch_loss, theta_a, theta_b, train_batches, eval_loss=..., **kwargs)`` (the
        shared signature of :func:`losslands.paths.autoneb` and
        :func:`losslands.paths.bezier_curve`) under a progress bar of ``n_steps`` steps.
        Positional-only, so ``kwargs`` may hold any of the method's own keywords."""
        with ctx.steps(n_steps, desc) as bar:
            return method(
                self.batch_loss, self.ends.theta_a, self.ends.theta_b, self.train_batches,
                eval_loss=self.eval_loss, progress=bar, **kwargs,
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
        with ctx.steps(n_points, "straight line") as bar:
            return line_profile(
                self.eval_loss, self.ends.theta_a, self.ends.theta_b, n_points, progress=bar
            )


def path_problem(ctx: ProbeContext, cfg: Any) -> PathProblem:
    """The :class:`PathProblem` that a curved-path config describes: ``other`` (or ``pairs``),
    ``bn_batches``, ``n_samples``, ``batch_size`` (None: the training batch size) and ``seed``."""
    ends = load_endpoints(ctx, cfg.other, cfg.pairs)
    evaluator = PointEvaluator(
        ctx.model, ctx.loss_fn, ctx.bn_batches(cfg.bn_batches), shard=ctx.shard
    )
    eval_batches = ctx.probe_batches(cfg.n_samples)
    return PathProblem(
        ends=ends,
        batch_loss=batch_loss(ctx.model, ctx.loss_fn),
        train_batches=ctx.train_batches(cfg.batch_size, seed=cfg.seed),
        eval_batches=eval_batches,
        eval_loss=evaluator.loss(eval_batches),
    )
