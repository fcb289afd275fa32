"""Nudged elastic band: a chain of images relaxed onto the minimum energy path between two points.

Method: Jónsson, Mills & Jacobsen 1998, "Nudged elastic band method for finding minimum energy
paths of transitions"; the tangent of Henkelman & Jónsson 2000, "Improved tangent estimate in the
nudged elastic band method for finding minimum energy paths and saddle points"; the climbing
image of Henkelman, Uberuaga & Jónsson 2000, "A climbing image nudged elastic band method for
finding saddle points and minimum energy paths". Each interior image feels the loss gradient
projected perpendicular to the path tangent plus a spring force along it; the climbing image feels
no spring and the parallel gradient inverted, so it climbs to the saddle.

Scale-free units: the run measures lengths in ``ell`` (the initial mean distance between
neighbouring images) and forces in ``F0`` (the largest loss-gradient norm on the initial interior
images). The optimiser works on ``x / ell`` and ``F / F0`` and the spring constant is
``spring * F0 / ell``, so multiplying the loss by any positive factor, or rescaling coordinates,
leaves the whole trajectory unchanged up to rounding. At convergence the springs only set the
spacing (equal on each side of the climbing image), never the shape of the path.

Over ~300 lines: the band, its forces and its FIRE steps are one algorithm.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from losslands.paths._common import Progress
from losslands.paths.interpolation import interpolate

# Climbing starts once the band is roughly relaxed: climbing from a poor initial chain can push the
# top image far up a ridge. Relative to F0, like ``tol``.
_CLIMB_START = 0.1


@dataclass
class NEBResult:
    """Outcome of :func:`neb`.

    Attributes:
        path: Images, shape ``(n_images, dim)``, endpoints included and unchanged.
        losses: Loss at each image (float64).
        max_loss: Highest image loss (the climbing image when climbing converged).
        barrier: ``max_loss - max(loss(start), loss(end))``.
        saddle_index: Index of the highest image.
        steps: Optimiser steps taken.
        converged: Whether the largest NEB force fell below ``tol * force_scale``.
        force_norm: Largest NEB force norm over the images at the end, in loss-gradient units.
        force_scale: ``F0``, the largest gradient norm over the initial interior images.
        force_history: Largest NEB force relative to ``F0`` at every step.
    """

    path: Tensor
    losses: Tensor
    max_loss: float
    barrier: float
    saddle_index: int
    steps: int
    converged: bool
    force_norm: float
    force_scale: float
    force_history: list[float] = field(default_factory=list)


def loss_and_grads(loss: Callable[[Tensor], Tensor], images: Tensor) -> tuple[Tensor, Tensor]:
    """Loss (float64) and its gradient at every row of ``images``."""
    values = torch.empty(len(images), dtype=torch.float64)
    grads = torch.zeros_like(images)
    for i, image in enumerate(images):
        x = image.detach().requires_grad_(True)
        with torch.enable_grad():
            value = loss(x)
            (g,) = torch.autograd.grad(value, x, allow_unused=True)
        values[i] = float(value.detach())
        if g is not None:
            grads[i] = g
    return values, grads


def improved_tangents(path: Tensor, losses: Tensor) -> Tensor:
    """Unit tangents at the interior images (Henkelman & Jónsson 2000, eqs. 8-11).

    The tangent points to the higher neighbour; at extrema of the energy along the chain it
    blends both neighbours weighted by the energy differences, which avoids kinks.
    """
    plus = path[2:] - path[1:-1]
    minus = path[1:-1] - path[:-2]
    e_prev, e, e_next = losses[:-2], losses[1:-1], losses[2:]
    d_max = torch.maximum((e_next - e).abs(), (e_prev - e).abs())
    d_min = torch.minimum((e_next - e).abs(), (e_prev - e).abs())
    rising_to_next = e_next > e_prev
    w_plus = torch.where(rising_to_next, d_max, d_min)
    w_minus = torch.where(rising_to_next, d_min, d_max)
    uphill = (e_next > e) & (e > e_prev)
    downhill = (e_next < e) & (e < e_prev)
    w_plus = torch.where(uphill, 1.0, torch.where(downhill, 0.0, w_plus))
    w_minus = torch.where(uphill, 0.0, torch.where(downhill, 1.0, w_minus))
    flat = (w_plus + w_minus) == 0  # equal energies: fall back to the central difference
    w_plus = torch.where(flat, 1.0, w_plus)
    w_minus = torch.where(flat, 1.0, w_minus)
    tau = w_plus.to(path.dtype)[:, None] * plus + w_minus.to(path.dtype)[:, None] * minus
    return tau / tau.norm(dim=1, keepdim=True).clamp_min(torch.finfo(path.dtype).tiny)


def neb_forces(
    path: Tensor,
    losses: Tensor,
    grads: Tensor,
    spring_k: float,
    climb: int | None = None,
    spacing: Tensor | None = None,
) -> Tensor:
    """NEB forces on the interior images, shape ``(n_images - 2, dim)``.

    Args:
        path: Images including endpoints, ``(n, dim)``.
        losses: Loss per image, ``(n,)``.
        grads: Loss gradient per image, ``(n, dim)`` (endpoint rows are ignored).
        spring_k: Spring constant (force per unit length).
        climb: Index into ``path`` of the climbing image, or None.
        spacing: Optional relative target lengths of the ``n - 1`` segments (mean 1). The springs
            then pull segment lengths towards proportionality with ``spacing`` instead of equality.
    """
    tau = improved_tangents(path, losses)
    g = grads[1:-1]
    g_par = (g * tau).sum(dim=1, keepdim=True) * tau
    seg = (path[1:] - path[:-1]).norm(dim=1)
    if spacing is not None:
        seg = seg / spacing.to(seg.dtype)
    forces = -(g - g_par) + spring_k * (seg[1:] - seg[:-1])[:, None] * tau
    if climb is not None:
        if not 0 < climb < len(path) - 1:
            raise ValueError(
                f"climbing image must be an interior index in 1..{len(path) - 2}, got {climb}"
            )
        forces[climb - 1] = -g[climb - 1] + 2.0 * g_par[climb - 1]
    return forces


def cap_rows(dx: Tensor, max_norm: float) -> Tensor:
    """Scale down every row of ``dx`` whose norm exceeds ``max_norm`` to that norm."""
    norms = dx.norm(dim=1, keepdim=True)
    return dx * torch.clamp(max_norm / norms.clamp_min(torch.finfo(dx.dtype).tiny), max=1.0)


class Fire:
    """FIRE minimiser (Bitzek, Koskinen, Gähler, Moseler & Gumbsch 2006, "Structural Relaxation
    Made Simple") on dimensionless forces; returns displacements capped per row (image).

    Standard parameters from the paper: N_min=5, f_inc=1.1, f_dec=0.5, alpha_start=0.1,
    f_alpha=0.99, dt_max=10 dt.
    """

    def __init__(self, dt: float = 0.1, max_step: float = 0.2) -> None:
        self.dt0, self.max_step = dt, max_step
        self.reset()

    def reset(self) -> None:
        """Forget the velocity (needed when the force field changes, e.g. climbing switches on)."""
        self.v: Tensor | None = None
        self.dt, self.alpha, self.n_positive = self.dt0, 0.1, 0

    def step(self, f: Tensor) -> Tensor:
        """Displacement for forces ``f`` (rows are images)."""
        if self.v is None:
            self.v = torch.zeros_like(f)
        elif float((f * self.v).sum()) > 0.0:
            f_norm = float(f.norm())
            if f_norm > 0.0:
                self.v = (1.0 - self.alpha) * self.v + self.alpha * float(
                    self.v.norm()
                ) * f / f_norm
            self.n_positive += 1
            if self.n_positive > 5:
                self.dt = min(1.1 * self.dt, 10.0 * self.dt0)
                self.alpha *= 0.99
        else:
            self.v = torch.zeros_like(f)
            self.dt *= 0.5
            self.alpha, self.n_positive = 0.1, 0
        self.v = self.v + self.dt * f
        return cap_rows(self.dt * self.v, self.max_step)


class SteepestDescent:
    """Fixed-step steepest descent on dimensionless forces, displacements capped per row."""

    def __init__(self, step_size: float = 0.1, max_step: float = 0.2) -> None:
        self.step_size, self.max_step = step_size, max_step

    def reset(self) -> None:
        """Stateless; present for interface parity with :class:`Fire`."""

    def step(self, f: Tensor) -> Tensor:
        """Displacement for forces ``f`` (rows are images)."""
        return cap_rows(self.step_size * f, self.max_step)


def straight_chain(start: Tensor, end: Tensor, n_images: int) -> Tensor:
    """``n_images`` equally spaced points from ``start`` to ``end`` (exact endpoints)."""
    if start.ndim != 1 or start.shape != end.shape:
        raise ValueError(
            f"start and end must be 1-D of equal length, got {tuple(start.shape)} and "
            f"{tuple(end.shape)}; flatten them with losslands.flat.get_flat"
        )
    if n_images < 3:
        raise ValueError(f"n_images counts the endpoints and must be >= 3, got {n_images}")
    return torch.stack([interpolate(start, end, i / (n_images - 1)) for i in range(n_images)])


def mean_segment_length(path: Tensor) -> float:
    """Mean Euclidean distance between neighbouring images."""
    return float((path[1:] - path[:-1]).norm(dim=1).mean())


def neb(
    loss: Callable[[Tensor], Tensor],
    start: Tensor,
    end: Tensor,
    *,
    n_images: int = 13,
    climbing: bool = True,
    max_steps: int = 1000,
    tol: float = 1e-3,
    spring: float = 1.0,
    optimizer: str = "fire",
    init_path: Tensor | None = None,
    progress: Progress | None = None,
) -> NEBResult:
    """Relax a nudged elastic band between ``start`` and ``end`` (fixed) on a deterministic loss.

    Args:
        loss: ``loss(theta) -> scalar tensor``, differentiable, on flat 1-D vectors.
        start: First endpoint, 1-D.
        end: Last endpoint, 1-D.
        n_images: Number of images including both endpoints.
        climbing: Turn the highest image into a climbing image once the band is roughly relaxed
            (largest force below 0.1 F0); convergence then requires climbing to have started.
        max_steps: Optimiser step budget.
        tol: Converged when the largest NEB force norm is below ``tol * F0``, where ``F0`` is the
            largest gradient norm on the initial interior images.
        spring: Spring constant in units of ``F0 / ell`` (``ell``: initial mean image spacing).
        optimizer: ``"fire"`` (default) or ``"sd"`` (steepest descent); both step in units of
            ``ell`` with each image moving at most ``0.2 ell`` per step.
        init_path: Optional initial chain ``(n_images, dim)`` overriding the straight line; its
            first and last rows must equal ``start`` and ``end``.
        progress: Optional ``progress(step, max_steps, {"force": relative force, "max_loss": ...})``.

    Returns:
        A :class:`NEBResult`.
    """
    if init_path is None:
        path = straight_chain(start, end, n_images)
    else:
        path = init_path.detach().clone()
        if path.ndim != 2 or not (torch.equal(path[0], start) and torch.equal(path[-1], end)):
            raise ValueError(
                "init_path must be (n_images, dim) with rows 0 and -1 equal to start and end"
            )
        if len(path) < 3:
            raise ValueError(f"init_path needs at least 3 images, got {len(path)}")
    stepper = _make_stepper(optimizer)
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    end_losses, _ = loss_and_grads(loss, path[[0, -1]])
    losses = torch.empty(len(path), dtype=torch.float64)
    losses[0], losses[-1] = end_losses[0], end_losses[-1]
    ell = mean_segment_length(path)
    if not ell > 0:
        raise ValueError("start and end coincide: the band has zero length")

    f_scale = math.nan
    climb_on, converged, history, steps = False, False, [], 0
    while True:
        losses[1:-1], inner_grads = loss_and_grads(loss, path[1:-1])
        grads = torch.zeros_like(path)
        grads[1:-1] = inner_grads
        if math.isnan(f_scale):
            f_scale = float(inner_grads.norm(dim=1).max())
            if not math.isfinite(f_scale):
                raise ValueError("loss gradient is not finite on the initial chain")
        climb = 1 + int(torch.argmax(losses[1:-1])) if climb_on else None
        forces = neb_forces(path, losses, grads, spring * f_scale / ell, climb)
        f_max = float(forces.norm(dim=1).max())
        rel = f_max / f_scale if f_scale > 0 else 0.0
        history.append(rel)
        if progress is not None:
            progress(steps, max_steps, {"force": rel, "max_loss": float(losses.max())})
        if climbing and not climb_on and rel < max(_CLIMB_START, tol):
            climb_on = True
            stepper.reset()
            continue
        if rel < tol and (climb_on or not climbing):
            converged = True
            break
        if steps >= max_steps:
            break
        with torch.no_grad():
            path[1:-1] += ell * stepper.step(forces / f_scale)
        steps += 1

    k = int(torch.argmax(losses))
    max_loss = float(losses[k])
    return NEBResult(
        path=path,
        losses=losses.clone(),
        max_loss=max_loss,
        barrier=max_loss - float(torch.max(losses[0], losses[-1])),
        saddle_index=k,
        steps=steps,
        converged=converged,
        force_norm=f_max,
        force_scale=f_scale,
        force_history=history,
    )


def _make_stepper(optimizer: str) -> Fire | SteepestDescent:
    if optimizer == "fire":
        return Fire()
    if optimizer == "sd":
        return SteepestDescent()
    raise ValueError(f"unknown optimizer {optimizer!r}: use 'fire' or 'sd'")
