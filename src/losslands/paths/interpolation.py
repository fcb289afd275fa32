"""Loss along the straight line between two parameter vectors, and its barrier.

The barrier follows Entezari, Sedghi, Saukh & Neyshabur 2022, "The Role of Permutation
Invariance in Linear Mode Connectivity of Neural Networks": the largest rise of the loss above
the linear interpolation of the two endpoint losses,
``max_{alpha in [0,1]} L((1-alpha) a + alpha b) - ((1-alpha) L(a) + alpha L(b))``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import torch
from torch import Tensor

from losslands.paths._common import Progress


@dataclass
class InterpolationResult:
    """Loss profile along ``theta(alpha) = (1 - alpha) theta_a + alpha theta_b``.

    Attributes:
        alphas: Sorted float64 grid; always contains 0 and 1 exactly.
        losses: Loss at each alpha (float64).
        barrier: Entezari et al. 2022 barrier over the grid points in [0, 1]; 0 when the loss never
            rises above the endpoint interpolation (it is exactly 0 at the endpoints themselves).
        barrier_alpha: The alpha where the barrier is attained.
        loss_a: Loss at alpha = 0.
        loss_b: Loss at alpha = 1.
        metrics: Extra per-point metrics returned by ``eval_fn``, one float64 tensor per key.
    """

    alphas: Tensor
    losses: Tensor
    barrier: float
    barrier_alpha: float
    loss_a: float
    loss_b: float
    metrics: dict[str, Tensor] = field(default_factory=dict)


def interpolate(theta_a: Tensor, theta_b: Tensor, alpha: float) -> Tensor:
    """``(1 - alpha) theta_a + alpha theta_b``, returning exact copies of the ends at 0 and 1.

    ``theta_a + alpha (theta_b - theta_a)`` is not exact at ``alpha = 1`` in floating point, and
    neither form is guaranteed to be, so the endpoints are special-cased.
    """
    if alpha == 0.0:
        return theta_a.detach().clone()
    if alpha == 1.0:
        return theta_b.detach().clone()
    return (1.0 - alpha) * theta_a.detach() + alpha * theta_b.detach()


def default_alphas(n_points: int = 61, lo: float = -1.0, hi: float = 2.0) -> Tensor:
    """Evenly spaced float64 grid on ``[lo, hi]`` with 0 and 1 included exactly.

    Grid points within rounding distance of 0 or 1 are snapped onto them; if the spacing misses
    them, they are added.
    """
    if n_points < 2 or not lo < hi:
        raise ValueError(
            f"need n_points >= 2 and lo < hi, got n_points={n_points}, lo={lo}, hi={hi}"
        )
    k = torch.arange(n_points, dtype=torch.float64)
    # one rounding per point (exact when lo and hi are integers), unlike linspace's accumulated steps
    grid = (lo * (n_points - 1 - k) + hi * k) / (n_points - 1)
    tol = 1e-9 * (hi - lo)
    for anchor in (0.0, 1.0):
        grid[(grid - anchor).abs() < tol] = anchor
    return _with_anchors(grid)


def _with_anchors(alphas: Tensor) -> Tensor:
    anchors = torch.tensor([0.0, 1.0], dtype=torch.float64)
    return torch.unique(torch.cat([alphas.to(torch.float64), anchors]), sorted=True)


def entezari_barrier(alphas: Tensor, losses: Tensor) -> tuple[float, float]:
    """Barrier and its alpha (Entezari et al. 2022) from a loss profile containing alpha 0 and 1.

    Only grid points in [0, 1] count; the maximum is over the grid, not the continuum.
    """
    i0 = torch.nonzero(alphas == 0.0)
    i1 = torch.nonzero(alphas == 1.0)
    if len(i0) == 0 or len(i1) == 0:
        raise ValueError("alphas must contain 0.0 and 1.0 exactly; build them with default_alphas")
    loss_a, loss_b = losses[int(i0[0])], losses[int(i1[0])]
    inside = (alphas >= 0.0) & (alphas <= 1.0)
    a, values = alphas[inside], losses[inside]
    excess = values - ((1.0 - a) * loss_a + a * loss_b)
    k = int(torch.argmax(excess))
    return float(excess[k]), float(a[k])


def linear_interpolation(
    loss: Callable[[Tensor], Tensor],
    theta_a: Tensor,
    theta_b: Tensor,
    alphas: Sequence[float] | Tensor | None = None,
    *,
    n_points: int = 61,
    lo: float = -1.0,
    hi: float = 2.0,
    eval_fn: Callable[[Tensor], dict[str, float | Tensor]] | None = None,
    progress: Progress | None = None,
) -> InterpolationResult:
    """Evaluate ``loss`` along the line through ``theta_a`` (alpha=0) and ``theta_b`` (alpha=1).

    Args:
        loss: ``loss(theta) -> scalar tensor`` on flat 1-D parameter vectors.
        theta_a: Start point, 1-D.
        theta_b: End point, same shape as ``theta_a``.
        alphas: Explicit grid; 0 and 1 are added if missing. Default: ``default_alphas(n_points,
            lo, hi)``.
        n_points: Size of the default grid.
        lo: Left end of the default grid.
        hi: Right end of the default grid.
        eval_fn: Optional ``eval_fn(theta) -> {name: value}`` recorded at every point
            (e.g. accuracy).
        progress: Optional ``progress(done, total, {"alpha": ..., "loss": ...})``.

    Returns:
        An :class:`InterpolationResult`.
    """
    if theta_a.ndim != 1 or theta_a.shape != theta_b.shape:
        raise ValueError(
            f"theta_a and theta_b must be 1-D of equal length, got {tuple(theta_a.shape)} and "
            f"{tuple(theta_b.shape)}; flatten them with losslands.flat.get_flat"
        )
    grid = (
        default_alphas(n_points, lo, hi)
        if alphas is None
        else _with_anchors(torch.as_tensor(alphas))
    )
    losses = torch.empty(len(grid), dtype=torch.float64)
    columns: dict[str, list[float]] = {}
    for i, alpha in enumerate(grid.tolist()):
        theta = interpolate(theta_a, theta_b, alpha)
        with torch.no_grad():
            losses[i] = float(loss(theta))
            extra = eval_fn(theta) if eval_fn is not None else {}
        if i > 0 and set(extra) != set(columns):
            raise ValueError(
                f"eval_fn must return the same keys at every point: {sorted(columns)} vs {sorted(extra)}"
            )
        for key, value in extra.items():
            columns.setdefault(key, []).append(float(value))
        if progress is not None:
            progress(i + 1, len(grid), {"alpha": alpha, "loss": float(losses[i])})
    barrier, barrier_alpha = entezari_barrier(grid, losses)
    return InterpolationResult(
        alphas=grid,
        losses=losses,
        barrier=barrier,
        barrier_alpha=barrier_alpha,
        loss_a=float(losses[grid == 0.0][0]),
        loss_b=float(losses[grid == 1.0][0]),
        metrics={k: torch.tensor(v, dtype=torch.float64) for k, v in columns.items()},
    )
