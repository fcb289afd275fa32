"""AutoNEB: nudged elastic band on mini-batch losses with adaptive insertion of pivots.

Draxler, Veschgini, Salmhofer & Hamprecht 2018, "Essentially No Barriers in Neural Network Energy
Landscape". Each cycle relaxes the current pivots with NEB forces (no climbing image) computed on
mini-batches, at a learning rate that decreases from cycle to cycle; then the band is evaluated
densely on a fixed evaluation loss along the straight segments between neighbouring pivots, and a
new pivot is inserted wherever that loss rises above the linear interpolation of the two pivots'
losses by more than a threshold. The saddle estimate is the maximum of the final dense
evaluation.

Optimiser (our choice, scale-free): heavy-ball momentum SGD as in the paper, but on dimensionless
forces. Forces are measured in ``F0`` (the largest evaluation-loss gradient norm over the initial
dense straight chain) and lengths in ``ell`` (the mean pivot spacing at the start of the current
cycle), so the learning rate is a fraction of a pivot spacing per unit relative force and any
positive rescaling of the loss leaves the run unchanged. The step is also bounded by curvature:
in the first cycle at most ``1 / lambda`` per unit force (heavy-ball momentum is stable below
``2 (1 + momentum) / lambda``; Polyak 1964), scaled down with the schedule in later cycles, where
``lambda`` is the largest ``|Hessian eigenvalue|`` of three successive mini-batch losses, one each
at the two endpoints and the midpoint (20 Lanczos steps watching both ends of the spectrum: an
estimate from below). On networks the sharp directions have ``lambda`` far above ``F0 / ell``,
and a step sized by the forces alone throws the band out of the valley. Each pivot moves at most ``0.2 ell`` per step; the velocity itself is capped so momentum cannot build up
behind that cap. Springs
(constant ``spring * F0 / ell``) keep the relative spacing the band had at the start of each
cycle, so freshly inserted pivots stay where the barrier was detected.

Over ~300 lines: the method, its insertion rule and its curvature step bound are one algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from losslands.paths._common import Progress, resolve_eval_loss, step_losses, top_curvature
from losslands.paths.interpolation import interpolate
from losslands.paths.neb import cap_rows, loss_and_grads, neb_forces, straight_chain

_MAX_STEP = 0.2  # largest move of one pivot per step, in units of the mean pivot spacing


@dataclass
class Insertion:
    """One inserted pivot: after ``cycle`` (1-based), on segment ``segment`` (between pivots
    ``segment`` and ``segment + 1`` at that time), at fraction ``s`` along it, where the
    evaluation loss exceeded the pivots' linear interpolation by ``excess``."""

    cycle: int
    segment: int
    s: float
    excess: float


@dataclass
class AutoNEBResult:
    """Outcome of :func:`autoneb`.

    Attributes:
        pivots: Final pivots ``(n, dim)``, endpoints included.
        pivot_losses: Evaluation loss at the pivots (float64).
        dense_t: Normalised path-length coordinate in [0, 1] of the dense evaluation points.
        dense_losses: Evaluation loss along the polyline through the pivots (float64).
        barrier: ``max(dense_losses) - max(loss(start), loss(end))``.
        saddle_t: ``dense_t`` of the highest dense point.
        saddle: Parameters at the highest dense point.
        cycles: Cycles run.
        n_inserted: Pivots inserted over the run.
        history: Barrier from the dense evaluation after every cycle.
        insertions: Every insertion, in order.
        threshold: The absolute insertion threshold used (in loss units).
        force_scale: ``F0``.
        curvature: ``lambda`` of the step bound (largest mini-batch ``|Hessian eigenvalue|``).
    """

    pivots: Tensor
    pivot_losses: Tensor
    dense_t: Tensor
    dense_losses: Tensor
    barrier: float
    saddle_t: float
    saddle: Tensor
    cycles: int
    n_inserted: int
    history: list[float] = field(default_factory=list)
    insertions: list[Insertion] = field(default_factory=list)
    threshold: float = 0.0
    force_scale: float = 0.0
    curvature: float = 0.0


@dataclass
class _Dense:
    t: Tensor
    losses: Tensor
    pivot_losses: Tensor
    saddle: Tensor
    saddle_t: float
    # per segment: (largest excess over the chord between pivot losses, its fraction s)
    excess: list[tuple[float, float]]


def _dense_profile(
    eval_loss: Callable[[Tensor], Tensor], pivots: Tensor, dense_points: int
) -> _Dense:
    """Evaluation loss at the pivots and at ``dense_points`` equally spaced points inside each
    segment; the points are generated one at a time, so memory stays O(dim)."""
    with torch.no_grad():
        pivot_losses = torch.tensor([float(eval_loss(p)) for p in pivots], dtype=torch.float64)
        seg_len = (pivots[1:] - pivots[:-1]).norm(dim=1).double()
        offsets = torch.cat([torch.zeros(1, dtype=torch.float64), seg_len.cumsum(0)])
        total = float(offsets[-1])
        s_grid = [k / (dense_points + 1) for k in range(1, dense_points + 1)]
        ts, losses, excess = [0.0], [float(pivot_losses[0])], []
        best, best_point, best_t = float(pivot_losses[0]), pivots[0].clone(), 0.0
        for j in range(len(pivots) - 1):
            lo, hi = float(pivot_losses[j]), float(pivot_losses[j + 1])
            seg_best = (-math.inf, 0.5)
            for s in s_grid + [1.0]:
                point = interpolate(pivots[j], pivots[j + 1], s)
                value = hi if s == 1.0 else float(eval_loss(point))
                t = (float(offsets[j]) + s * float(seg_len[j])) / total
                ts.append(t)
                losses.append(value)
                if s < 1.0 and value - ((1 - s) * lo + s * hi) > seg_best[0]:
                    seg_best = (value - ((1 - s) * lo + s * hi), s)
                if value > best:
                    best, best_point, best_t = value, point, t
            excess.append(seg_best)
    return _Dense(
        t=torch.tensor(ts, dtype=torch.float64),
        losses=torch.tensor(losses, dtype=torch.float64),
        pivot_losses=pivot_losses,
        saddle=best_point,
        saddle_t=best_t,
        excess=excess,
    )


def _lr_for(
    lr_schedule: Sequence[float] | Callable[[int], float] | None, cycle: int, cycles: int
) -> float:
    if lr_schedule is None:
        # geometric decay from 0.1 to 0.01 over the run
        return 0.1 * 0.1 ** (cycle / max(cycles - 1, 1))
    if callable(lr_schedule):
        return float(lr_schedule(cycle))
    if len(lr_schedule) < cycles:
        raise ValueError(
            f"lr_schedule has {len(lr_schedule)} entries for {cycles} cycles: give one per cycle"
        )
    return float(lr_schedule[cycle])


def _run_cycle(
    pivots: Tensor,
    stream: Iterable[Callable[[Tensor], Tensor]],
    steps: int,
    lr: float,
    momentum: float,
    spring: float,
    f_scale: float,
    max_step_per_force: float = math.inf,
) -> None:
    """Momentum SGD on the interior pivots (in place) with mini-batch NEB forces.

    A step is ``step * velocity`` with ``velocity`` the momentum sum of ``F / F0`` and ``step =
    min(ell * lr, F0 * max_step_per_force)``.
    """
    seg = (pivots[1:] - pivots[:-1]).norm(dim=1)
    ell = float(seg.mean())
    step = min(ell * lr, f_scale * max_step_per_force)
    spacing = seg / ell
    velocity = torch.zeros_like(pivots[1:-1])
    losses = torch.empty(len(pivots), dtype=torch.float64)
    grads = torch.zeros_like(pivots)
    for _, batch_loss in zip(range(steps), stream, strict=False):
        with torch.no_grad():  # the fixed endpoints only enter the tangents, through their loss
            losses[0], losses[-1] = float(batch_loss(pivots[0])), float(batch_loss(pivots[-1]))
        losses[1:-1], grads[1:-1] = loss_and_grads(batch_loss, pivots[1:-1])
        forces = neb_forces(pivots, losses, grads, spring * f_scale / ell, None, spacing)
        velocity = momentum * velocity + forces / f_scale
        # capping the velocity, not just the step, stops momentum from building up behind the cap
        velocity = cap_rows(velocity, _MAX_STEP * ell / step)
        with torch.no_grad():
            pivots[1:-1] += step * velocity


def autoneb(
    loss_fn: Callable[..., Tensor],
    start: Tensor,
    end: Tensor,
    batches: Iterable[Any] | None,
    *,
    eval_loss: Callable[[Tensor], Tensor] | None = None,
    n_pivots_init: int = 3,
    cycles: int = 6,
    steps_per_cycle: int = 200,
    insert_threshold: float = 0.02,
    lr_schedule: Sequence[float] | Callable[[int], float] | None = None,
    momentum: float = 0.9,
    spring: float = 1.0,
    dense_points: int = 9,
    max_pivots: int = 33,
    progress: Progress | None = None,
) -> AutoNEBResult:
    """AutoNEB (Draxler et al. 2018) between fixed ``start`` and ``end``.

    Args:
        loss_fn: ``loss_fn(theta, batch) -> scalar tensor`` (or ``loss_fn(theta)`` when
            ``batches`` is None), differentiable, on flat 1-D vectors.
        start: First endpoint, 1-D.
        end: Last endpoint, 1-D.
        batches: Iterable of mini-batches, cycled through; None for a deterministic ``loss_fn``.
        eval_loss: Fixed evaluation loss ``eval_loss(theta)`` for the dense evaluation and the
            barrier. Default: ``loss_fn`` if deterministic, else its mean over ``batches`` when
            that is a list or tuple.
        n_pivots_init: Initial pivots on the straight line, endpoints included (>= 3).
        cycles: Number of NEB cycles.
        steps_per_cycle: Mini-batch steps per cycle.
        insert_threshold: Insert a pivot where the evaluation loss exceeds the chord between
            neighbouring pivot losses by more than ``insert_threshold * E0``, with ``E0`` the loss
            range on the initial straight chain (its dense maximum minus the lower endpoint loss).
        lr_schedule: Per-cycle learning rates (sequence, or ``cycle -> lr`` with 0-based
            cycles), in pivot spacings per unit ``F / F0``. Default: 0.1 decaying
            geometrically to 0.01 at the last cycle. An upper bound: the step per unit force
            is also capped at ``(lr / lr_0) / lambda`` (``lambda``: ``AutoNEBResult.curvature``),
            which binds on networks; then only the schedule's shape matters.
        momentum: Heavy-ball momentum.
        spring: Spring constant in units of ``F0 / ell``.
        dense_points: Evaluation points inside each segment.
        max_pivots: No insertions beyond this many pivots.
        progress: Optional ``progress(cycle, cycles, {"barrier": ..., "n_pivots": ...})``.

    Returns:
        An :class:`AutoNEBResult`.
    """
    if n_pivots_init < 3:
        raise ValueError(
            f"n_pivots_init counts the endpoints and must be >= 3, got {n_pivots_init}"
        )
    if cycles < 1 or steps_per_cycle < 0 or dense_points < 1:
        raise ValueError("need cycles >= 1, steps_per_cycle >= 0 and dense_points >= 1")
    evaluate = resolve_eval_loss(loss_fn, batches, eval_loss)
    stream = step_losses(loss_fn, batches)
    pivots = straight_chain(start, end, n_pivots_init)
    if not float((end - start).norm()) > 0:
        raise ValueError("start and end coincide: the band has zero length")

    dense = _dense_profile(evaluate, pivots, dense_points)
    end_max = float(torch.max(dense.pivot_losses[0], dense.pivot_losses[-1]))
    threshold = insert_threshold * float(
        dense.losses.max() - torch.min(dense.pivot_losses[0], dense.pivot_losses[-1])
    )
    chain = torch.stack(
        [interpolate(start, end, float(t)) for t in torch.linspace(0, 1, len(dense.t))[1:-1]]
    )
    f_scale = float(loss_and_grads(evaluate, chain)[1].norm(dim=1).max())
    if not (math.isfinite(f_scale) and f_scale > 0):
        raise ValueError(
            f"evaluation-loss gradient on the straight line is {f_scale}: nothing to relax"
        )

    # the sharpest mini-batch curvature near the band bounds a stable step
    curvature = max(
        top_curvature(next(stream), p) for p in (start, 0.5 * (start + end), end)
    )
    lr0 = _lr_for(lr_schedule, 0, cycles)
    history: list[float] = []
    insertions: list[Insertion] = []
    for cycle in range(cycles):
        lr = _lr_for(lr_schedule, cycle, cycles)
        bound = (lr / lr0) / curvature if curvature > 0 and lr0 > 0 else math.inf
        _run_cycle(pivots, stream, steps_per_cycle, lr, momentum, spring, f_scale, bound)
        dense = _dense_profile(evaluate, pivots, dense_points)
        history.append(float(dense.losses.max()) - end_max)
        if progress is not None:
            progress(cycle + 1, cycles, {"barrier": history[-1], "n_pivots": float(len(pivots))})
        if cycle + 1 < cycles:
            pivots = _insert(pivots, dense, threshold, max_pivots, cycle + 1, insertions)

    return AutoNEBResult(
        pivots=pivots,
        pivot_losses=dense.pivot_losses,
        dense_t=dense.t,
        dense_losses=dense.losses,
        barrier=history[-1],
        saddle_t=dense.saddle_t,
        saddle=dense.saddle,
        cycles=cycles,
        n_inserted=len(insertions),
        history=history,
        insertions=insertions,
        threshold=threshold,
        force_scale=f_scale,
        curvature=curvature,
    )


def _insert(
    pivots: Tensor,
    dense: _Dense,
    threshold: float,
    max_pivots: int,
    cycle: int,
    log: list[Insertion],
) -> Tensor:
    """Insert a pivot at the worst point of every segment whose excess exceeds ``threshold``,
    largest excess first, up to ``max_pivots`` pivots in total."""
    room = max_pivots - len(pivots)
    candidates = sorted(
        ((exc, j, s) for j, (exc, s) in enumerate(dense.excess) if exc > threshold), reverse=True
    )[: max(room, 0)]
    rows = list(pivots)
    for exc, j, s in sorted(candidates, key=lambda c: c[1], reverse=True):
        rows.insert(j + 1, interpolate(pivots[j], pivots[j + 1], s))
        log.append(Insertion(cycle=cycle, segment=j, s=s, excess=exc))
    return torch.stack(rows)
