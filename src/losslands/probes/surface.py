"""``probe=surface``: the loss on a 2-D slice through the trained weights.

Li, Xu, Taylor, Studer & Goldstein (2018), "Visualizing the Loss Landscape of Neural Nets":
``L(theta + alpha d1 + beta d2)`` on a ``resolution x resolution`` grid over ``span`` in both
coordinates, with ``d1``, ``d2`` independent filter-normalised Gaussian directions
(:func:`losslands.directions.filter_normalized_direction`: each filter rescaled to the norm of
the weight filter, bias and BatchNorm entries zero), on the fixed train probe subset. As in Li
et al., the stored BatchNorm statistics are used (``bn_batches: 0``); ``bn_batches > 0``
recomputes them at every grid point instead.

``border_rise`` (our summary, not from the paper): the mean over the grid's outer ring of
``L - L_center``, the loss increase one ``span`` away from the weights, in units of loss; larger
means a sharper minimum at this scale (filter normalisation makes it comparable across
networks). It replaces a ratio to ``L_center``, which grew without bound as the training loss
went to 0 and so ranked well-fitted models as sharp.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from matplotlib.figure import Figure

from losslands.directions import filter_normalized_direction
from losslands.evaluate import PointEvaluator
from losslands.flat import get_flat
from losslands.probes.base import ProbeConfig, ProbeContext, ProbeInfo, Scalar


@dataclass
class Config(ProbeConfig):
    """Options of ``probe=surface`` (``conf/probe/surface.yaml`` documents each)."""

    name: str = "surface"
    n_samples: int = 2000
    resolution: int = 21
    span: list[float] = field(default_factory=lambda: [-1.0, 1.0])
    seed: int = 0
    bn_batches: int = 0

    def check(self) -> None:
        self.at_least("n_samples", 1)
        self.at_least("bn_batches", 0)
        if len(self.span) != 2:
            raise ValueError(f"probe.span={list(self.span)} must be [lo, hi]")
        grid_axis(self.span, self.resolution)


INFO = ProbeInfo(
    title="Loss surface",
    order=40,
    scalars={
        "loss_center": Scalar("loss at the trained weights on the probe subset", "loss"),
        "loss_min": Scalar("smallest loss on the grid", "loss"),
        "loss_max": Scalar("largest loss on the grid", "loss"),
        "border_rise": Scalar("mean loss on the grid's outer ring minus the centre loss", "loss"),
    },
    table=["loss_center", "loss_min", "loss_max", "border_rise"],
    definition=(
        "**Surface** (`probe=surface`): loss on a 2-D grid θ + αd1 + βd2 along two "
        "filter-normalised random directions (Li et al. 2018)."
    ),
)


def grid_axis(span: tuple[float, float], resolution: int) -> torch.Tensor:
    """``resolution`` evenly spaced float64 points on ``span``, with 0 snapped in exactly.

    Raises:
        ValueError: ``span`` does not contain 0 (the trained weights) or ``resolution < 2``.
    """
    lo, hi = float(span[0]), float(span[1])
    if not lo < 0.0 < hi or resolution < 2:
        raise ValueError(
            f"probe.span must satisfy lo < 0 < hi and probe.resolution >= 2, got span=[{lo}, {hi}], "
            f"resolution={resolution}"
        )
    axis = torch.linspace(lo, hi, resolution, dtype=torch.float64)
    axis[(axis.abs() < 1e-9 * (hi - lo))] = 0.0
    if not (axis == 0.0).any():  # an even resolution skips the centre: add it
        axis = torch.sort(torch.cat([axis, axis.new_zeros(1)])).values
    return axis


def outer_ring(values: torch.Tensor) -> torch.Tensor:
    """The entries on the border of a 2-D grid (each once)."""
    mask = torch.zeros_like(values, dtype=torch.bool)
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = True
    return values[mask]


def run(ctx: ProbeContext, cfg: Config) -> dict[str, Any]:
    gen = torch.Generator().manual_seed(cfg.seed)
    d1 = filter_normalized_direction(ctx.model, gen)
    d2 = filter_normalized_direction(ctx.model, gen)
    theta = get_flat(ctx.model)
    evaluator = PointEvaluator(
        ctx.model, ctx.loss_fn, ctx.bn_batches(cfg.bn_batches, required=False),
        shard=ctx.shard,
    )
    data = ctx.probe_batches(cfg.n_samples)
    alphas = grid_axis(cfg.span, cfg.resolution)
    betas = alphas.clone()
    losses = torch.empty(len(alphas), len(betas), dtype=torch.float64)
    accs = torch.empty_like(losses)
    with ctx.steps(losses.numel(), "surface") as bar:
        for i, a in enumerate(alphas.tolist()):
            for j, b in enumerate(betas.tolist()):
                m = evaluator.metrics(theta + a * d1 + b * d2, data)
                losses[i, j], accs[i, j] = m["loss"], m["acc"]
                bar()
    i0, j0 = int(torch.nonzero(alphas == 0.0)[0]), int(torch.nonzero(betas == 0.0)[0])
    center = float(losses[i0, j0])
    ring = outer_ring(losses)
    return {
        "alphas": alphas.tolist(),
        "betas": betas.tolist(),
        # losses[i][j] = L(theta + alphas[i] d1 + betas[j] d2)
        "losses": losses.tolist(),
        "accs": accs.tolist(),
        "loss_center": center,
        "acc_center": float(accs[i0, j0]),
        "loss_min": float(losses.min()),
        "loss_max": float(losses.max()),
        "border_rise": float((ring - center).mean()),
        "theta_norm": float(theta.norm()),
        "direction_norms": [float(d1.norm()), float(d2.norm())],
        "direction_cosine": float(d1 @ d2 / (d1.norm() * d2.norm())),
        "n_samples": sum(len(x) for x, _ in data),
        "bn_recomputed": evaluator.bn_data is not None,
    }


def scalars(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(result[k]) for k in ("loss_center", "loss_min", "loss_max", "border_rise")}


def plot(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(11, 4.8), layout="constrained")
    alphas, betas = np.asarray(result["alphas"]), np.asarray(result["betas"])
    z = np.asarray(result["losses"], dtype=float).T  # rows over beta, columns over alpha
    x, y = np.meshgrid(alphas, betas)
    ax = fig.add_subplot(1, 2, 1)
    cs = ax.contour(x, y, z, levels=20, cmap="viridis")
    ax.clabel(cs, fontsize=7)
    ax.plot([0.0], [0.0], "r*", ms=10, label="trained weights")
    ax.set_xlabel("alpha (direction 1)")
    ax.set_ylabel("beta (direction 2)")
    ax.set_aspect("equal")
    ax.legend(loc="lower left", fontsize=8)
    ax3 = fig.add_subplot(1, 2, 2, projection="3d")
    ax3.plot_surface(x, y, z, cmap="viridis", linewidth=0, antialiased=True)
    ax3.locator_params(nbins=5)
    ax3.set_xlabel("alpha")
    ax3.set_ylabel("beta")
    ax3.set_zlabel("loss")
    fig.suptitle(
        f"loss surface (filter-normalised directions): centre {result['loss_center']:.3g}, "
        f"border rise {result['border_rise']:.3g}"
    )
    return fig
