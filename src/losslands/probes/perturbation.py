"""``probe=perturbation``: the loss along the top Hessian eigenvector and a random direction.

On the probe subset (``probe.n_samples`` unaugmented training images, model in eval mode), the
top eigenpair ``(lambda_top, v)`` of the Hessian of the mean loss comes from Lanczos
(:func:`losslands.curvature.lanczos`). The loss ``L(eps) = L(theta + eps v)`` on the same samples
is evaluated on a symmetric grid ``0, +-eps_j`` with ``eps_j`` log-spaced from ``probe.eps_min``
to ``probe.eps_max``; the central difference ``(L(eps) - 2 L(0) + L(-eps)) / eps^2`` equals
``v^T H v = lambda_top`` up to ``O(eps^2)`` (the quartic term of the Taylor expansion), and its
departure at large ``eps`` shows how far the quadratic model holds.

Round-off: at ``eps = 1e-3`` the numerator is ``~ lambda * 1e-6``, while float32 losses carry
errors of ``~ 1e-7 * L``, which would make the curvature wrong by tens of percent. The losses
are therefore computed on a copy of the model in ``probe.loss_dtype`` (default float64), where
the same error is ``~ 1e-16 * L / 1e-6``, negligible (on a 150-parameter tanh CNN: 13%
relative error in float32, 1e-6 in float64, at ``eps = 1e-3``).

Kinks: with ReLU and max-pooling the loss is only piecewise twice differentiable, and the
autograd Hessian is the curvature inside the current piece. A step crosses the kinks of the
units closest to switching, so the central difference departs from ``lambda_top`` already at
steps that are small for a smooth loss (measured: 0.2% at ``eps = 1e-3`` on a tiny ReLU CNN,
agreement to 1e-4 below ``1e-5``; 2.6% at ``1e-3`` for small_cnn on 256 CIFAR-10 images).
Lower ``probe.eps_min`` to watch the limit.

For comparison, the same is done along a filter-normalised random direction ``d`` (Li, Xu,
Taylor, Studer & Goldstein 2018, "Visualizing the Loss Landscape of Neural Nets";
:func:`losslands.directions.filter_normalized_direction`: every weight filter rescaled to the
norm of the corresponding filter of ``theta``, biases and BatchNorm parameters zero). With ``probe.random_scale: unit`` (default) ``d`` is then
scaled to unit length, so both directions share the step-length axis; ``filter`` keeps Li et
al.'s scale (``|d| ~ |theta|``). The curvature along ``d`` is reported per unit length, i.e. the
central difference divided by ``|d|^2``, which tends to the Rayleigh quotient
``d^T H d / d^T d`` (also computed with one Hessian-vector product).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from losslands.curvature import lanczos
from losslands.curvature.operators import CURVATURES, Restricted
from losslands.directions import filter_normalized_direction
from losslands.flat import block_indices, flat_loss, get_flat
from losslands.probes.base import ProbeConfig, ProbeContext, ProbeInfo, Scalar

SCALES = ("unit", "filter")
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def eps_magnitudes(eps_min: float, eps_max: float, n: int) -> list[float]:
    """``n`` log-spaced step sizes from ``eps_min`` to ``eps_max`` (ascending, float64)."""
    if not 0 < eps_min < eps_max or not isinstance(n, int) or n < 2:
        raise ValueError(
            f"need 0 < probe.eps_min ({eps_min}) < probe.eps_max ({eps_max}) and "
            f"probe.n_magnitudes ({n}) an integer >= 2"
        )
    return torch.logspace(math.log10(eps_min), math.log10(eps_max), n, dtype=torch.float64).tolist()


def symmetric_grid(magnitudes: list[float]) -> list[float]:
    """``-eps_n .. -eps_1, 0, eps_1 .. eps_n``: exact negations, so each ``+-eps`` pair matches."""
    return [-m for m in reversed(magnitudes)] + [0.0] + list(magnitudes)


def fd_curvature(f: Callable[[float], float], eps: float) -> float:
    """Central second difference ``(f(eps) - 2 f(0) + f(-eps)) / eps^2``.

    Exact for quadratics; for smooth ``f`` it is ``f''(0) + f''''(0) eps^2 / 12 + O(eps^4)``.
    """
    return (f(eps) - 2.0 * f(0.0) + f(-eps)) / eps**2


@dataclass
class Config(ProbeConfig):
    """Options of ``probe=perturbation`` (``conf/probe/perturbation.yaml`` documents each)."""

    name: str = "perturbation"
    operator: str = "hessian"
    block: str | None = None
    n_samples: int = 5000
    max_iters: int = 100
    tol: float = 1.0e-6
    chunk_size: int | None = 1000
    eps_min: float = 1.0e-3
    eps_max: float = 1.0
    n_magnitudes: int = 13
    loss_dtype: str = "float64"
    batch_size: int = 1000
    random_scale: str = "unit"
    seed: int = 0

    def check(self) -> None:
        for key, low in (("n_samples", 1), ("max_iters", 2), ("batch_size", 1), ("n_magnitudes", 2)):
            self.at_least(key, low)
        if self.chunk_size is not None:
            self.at_least("chunk_size", 1)
        self.positive("tol")
        eps_magnitudes(self.eps_min, self.eps_max, self.n_magnitudes)
        self.one_of("random_scale", SCALES)
        self.one_of("loss_dtype", tuple(DTYPES))
        self.one_of("operator", ("hessian", *CURVATURES))


INFO = ProbeInfo(
    title="Loss along the top eigenvector",
    order=30,
    scalars={
        "lambda_top": Scalar("top Hessian eigenvalue (Lanczos) on the probe subset", "loss"),
        "fd_curvature_small": Scalar("central-difference curvature along v at the smallest step", "loss"),
        "fd_curvature_large": Scalar("central-difference curvature along v at the largest step", "loss"),
        "loss_range": Scalar("max - min loss over the step grid along v", "loss"),
        "random_curvature_small": Scalar("central-difference curvature along the random direction (per unit length), smallest step", "loss"),
        "rel_error_small": Scalar("|fd_curvature_small - v^T H v| / |v^T H v| (v^T H v = lambda_top for the full Hessian)"),
    },
    table=["lambda_top", "fd_curvature_small", "fd_curvature_large", "loss_range",
           "random_curvature_small"],
    definition=(
        "**Perturbation** (`probe=perturbation`): loss on the probe subset at θ + εv for the top "
        "Hessian eigenvector v; curvature by central differences (L(ε) − 2L(0) + L(−ε))/ε², "
        "which tends to λtop as ε → 0 with an O(ε²) error for a twice-differentiable loss (ReLU "
        "and max-pool kinks make a network's loss only piecewise smooth: there it can stay a few "
        "% off); loss range over the grid. A filter-normalised random direction (Li et al. 2018) "
        "for comparison."
    ),
)


def _profile(
    loss: Callable[[Tensor], Tensor],
    theta: Tensor,
    direction: Tensor,
    grid: list[float],
    magnitudes: list[float],
    norm2: float,
) -> dict[str, Any]:
    """Losses on the grid and per-unit-length curvatures at every magnitude."""
    with torch.no_grad():
        values = {e: float(loss(theta + e * direction)) for e in grid}
    curv = [fd_curvature(values.__getitem__, m) / norm2 for m in magnitudes]
    losses = [values[e] for e in grid]
    return {"loss": losses, "curvature": curv, "loss_range": max(losses) - min(losses)}


def run(ctx: ProbeContext, cfg: Config) -> dict[str, Any]:
    magnitudes = eps_magnitudes(cfg.eps_min, cfg.eps_max, cfg.n_magnitudes)
    grid = symmetric_grid(magnitudes)
    x, y = ctx.probe_data(cfg.n_samples, index=0)
    hessian = ctx.hessian(x, y, chunk_size=cfg.chunk_size)
    op = hessian if cfg.operator == "hessian" else ctx.hessian(
        x, y, chunk_size=cfg.chunk_size, operator=cfg.operator, seed=cfg.seed)
    index = None
    if cfg.block is not None:
        (index,) = block_indices(ctx.model, [cfg.block]).values()
        op = Restricted(op, index)
    # only the top pair is used: the (clustered) bottom end must not hold up the stopping test
    eig = lanczos(op, 1, max_iters=cfg.max_iters, tol=cfg.tol, seed=cfg.seed, which="top")
    lambda_top = float(eig.top[0])
    top_vector = eig.top_vectors[0]
    if index is not None:  # the block's eigenvector, zero on every other parameter
        top_vector = torch.zeros(hessian.dim, dtype=top_vector.dtype, device=top_vector.device)
        top_vector[index] = eig.top_vectors[0]
    # what the loss's second difference along v measures: v^T H v, which is lambda_top itself
    # for the full Hessian; for a block or another matrix one Hessian product gives it
    curvature_ref = lambda_top if cfg.operator == "hessian" and index is None else float(
        top_vector.double() @ hessian.matvec(top_vector).double())

    generator = torch.Generator().manual_seed(cfg.seed)
    d = filter_normalized_direction(ctx.model, generator)
    filter_norm = float(d.norm())
    if cfg.random_scale == "unit":
        d = d / filter_norm
    rayleigh = float(d.double() @ hessian.matvec(d).double()) / float(d.double() @ d.double())

    dtype = DTYPES[cfg.loss_dtype]
    model = copy.deepcopy(ctx.model).to(dtype).eval()
    bs = cfg.batch_size
    batches = [(x[i : i + bs].to(dtype), y[i : i + bs]) for i in range(0, x.shape[0], bs)]
    loss = flat_loss(model, ctx.loss_fn, batches)
    theta = get_flat(model)
    v = top_vector.to(dtype)
    top = _profile(loss, theta, v, grid, magnitudes, float(v.double().norm()) ** 2)
    rand = _profile(loss, theta, d.to(dtype), grid, magnitudes, float(d.double().norm()) ** 2)
    return {
        "n_samples": cfg.n_samples,
        "loss_dtype": cfg.loss_dtype,
        "eps": grid,
        "magnitudes": magnitudes,
        "lambda_top": lambda_top,
        "lambda_top_residual": float(eig.top_residuals[0]),
        "lanczos_iterations": eig.iterations,
        "lanczos_converged": eig.converged,
        "loss_top": top["loss"],
        "curvature_top": top["curvature"],
        "fd_curvature_small": top["curvature"][0],
        "fd_curvature_large": top["curvature"][-1],
        "rel_error_small": abs(top["curvature"][0] - curvature_ref) / abs(curvature_ref),
        "hessian_curvature_top": curvature_ref,
        "operator": cfg.operator,
        "block": cfg.block,
        "loss_range": top["loss_range"],
        "random_scale": cfg.random_scale,
        "random_filter_norm": filter_norm,
        "random_direction_norm": float(d.double().norm()),
        "loss_random": rand["loss"],
        "curvature_random": rand["curvature"],
        "random_curvature_small": rand["curvature"][0],
        "random_rayleigh": rayleigh,
        "random_loss_range": rand["loss_range"],
    }


def scalars(result: dict[str, Any]) -> dict[str, float]:
    names = (
        "lambda_top",
        "fd_curvature_small",
        "fd_curvature_large",
        "loss_range",
        "random_curvature_small",
        "rel_error_small",
    )
    return {name: result[name] for name in names}


def plot(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_loss, ax_curv = fig.subplots(1, 2)
    linthresh = result["magnitudes"][0]
    unit = "" if result["random_scale"] == "unit" else " (Li et al. scale)"
    ax_loss.plot(result["eps"], result["loss_top"], "o-", ms=3, label="top eigenvector")
    ax_loss.plot(
        result["eps"], result["loss_random"], "s-", ms=3, label=f"filter-normalised random{unit}"
    )
    ax_loss.set_xscale("symlog", linthresh=linthresh)
    ax_loss.set(
        xlabel="step eps",
        ylabel="loss on the probe subset",
        title=f"loss along directions (n={result['n_samples']})",
    )
    ax_loss.legend(fontsize=8)
    ax_curv.semilogx(result["magnitudes"], result["curvature_top"], "o-", label="top eigenvector")
    ax_curv.semilogx(result["magnitudes"], result["curvature_random"], "s-", label="random")
    ax_curv.axhline(result["lambda_top"], color="C0", ls=":", label=r"$\lambda_{top}$ (Lanczos)")
    ax_curv.axhline(result["random_rayleigh"], color="C1", ls=":", label=r"$d^THd/d^Td$")
    ax_curv.set(
        xlabel="|eps|",
        ylabel="central-difference curvature per unit length",
        title=f"curvature vs step ({result['loss_dtype']} losses)",
    )
    ax_curv.legend(fontsize=8)
    return fig


def lines(result: dict[str, Any]) -> dict[str, tuple[str, dict[str, tuple[list, list]]]]:
    eps, mags = result["eps"], result["magnitudes"]
    return {
        "loss": ("eps", {d: (eps, result[f"loss_{d}"]) for d in ("top", "random")}),
        "curvature": ("eps", {d: (mags, result[f"curvature_{d}"]) for d in ("top", "random")}),
    }


def tables(result: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    rows = [
        [e, a, b]
        for e, a, b in zip(result["eps"], result["loss_top"], result["loss_random"], strict=True)
    ]
    curv = [
        [m, a, b]
        for m, a, b in zip(
            result["magnitudes"], result["curvature_top"], result["curvature_random"], strict=True
        )
    ]
    return {
        "loss": (["eps", "loss_top", "loss_random"], rows),
        "curvature": (["eps", "curvature_top", "curvature_random"], curv),
    }
