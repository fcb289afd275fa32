"""Analytic 2-D potentials with known minima and saddles, for testing path methods.

Each potential maps ``xy`` of shape ``(..., 2)`` to energies of shape ``(...)`` (a scalar for a
single point), is differentiable with autograd and takes a ``scale`` factor so the same
geometry can be probed at very different energy and gradient magnitudes.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

# Müller & Brown 1979, "Location of saddle points and minimum energy paths by a constrained
# simplex optimization procedure" (Theor. Chim. Acta 53, 75-93): four Gaussian-like terms.
_MB_A = (-200.0, -100.0, -170.0, 15.0)
_MB_a = (-1.0, -1.0, -6.5, 0.7)
_MB_b = (0.0, 0.0, 11.0, 0.6)
_MB_c = (-10.0, -10.0, -6.5, 0.7)
_MB_X0 = (1.0, 0.0, -0.5, -1.0)
_MB_Y0 = (0.0, 0.5, 1.5, 1.0)

#: Müller-Brown minima as published (3 decimals): deepest A, B, and the shallow C between them.
MULLER_BROWN_MINIMA: tuple[tuple[float, float], ...] = (
    (-0.558, 1.442),
    (0.623, 0.028),
    (-0.050, 0.467),
)
MULLER_BROWN_MINIMA_ENERGIES: tuple[float, ...] = (-146.700, -108.167, -80.768)
#: Saddles: S1 between A and C (the highest point of the A-B minimum energy path), S2 between C and B.
MULLER_BROWN_SADDLES: tuple[tuple[float, float], ...] = ((-0.822, 0.624), (0.212, 0.293))
MULLER_BROWN_SADDLE_ENERGIES: tuple[float, ...] = (-40.665, -72.249)

#: Ring valley: every point at ``r = radius`` is a minimum (energy 0); the origin is a maximum.
RING_MIN_ENERGY = 0.0
RING_CENTER = (0.0, 0.0)

#: Double well ``(x^2 - 1)^2 + y^2``: minima, the saddle between them and its energy (unit scale).
DOUBLE_WELL_MINIMA: tuple[tuple[float, float], ...] = ((-1.0, 0.0), (1.0, 0.0))
DOUBLE_WELL_SADDLE: tuple[float, float] = (0.0, 0.0)
DOUBLE_WELL_SADDLE_ENERGY = 1.0
#: The straight line between the minima runs through the saddle: its barrier is the saddle energy.
DOUBLE_WELL_LINEAR_BARRIER = 1.0


def _check(xy: Tensor) -> None:
    if xy.shape[-1] != 2:
        raise ValueError(f"expected points of shape (..., 2), got {tuple(xy.shape)}")


def muller_brown(xy: Tensor, scale: float = 1.0) -> Tensor:
    """Müller-Brown potential (Müller & Brown 1979), multiplied by ``scale``.

    Energies of the minima and saddles are listed in ``MULLER_BROWN_*``; they scale linearly
    with ``scale`` while their positions do not.
    """
    _check(xy)
    x, y = xy[..., 0], xy[..., 1]
    total = torch.zeros_like(x)
    for amp, a, b, c, x0, y0 in zip(_MB_A, _MB_a, _MB_b, _MB_c, _MB_X0, _MB_Y0, strict=True):
        dx, dy = x - x0, y - y0
        total = total + amp * torch.exp(a * dx * dx + b * dx * dy + c * dy * dy)
    return scale * total


def ring_valley(xy: Tensor, scale: float = 1.0, radius: float = 1.0) -> Tensor:
    """``scale * (r^2/radius^2 - 1)^2``: a flat circular valley of minima around a central bump.

    Two points on the ring are connected at zero barrier along the ring, while the chord between
    them crosses the bump: a chord at distance ``d`` from the centre peaks at
    ``scale * (1 - d^2/radius^2)^2`` (see :func:`ring_chord_barrier`).
    """
    _check(xy)
    r2 = (xy[..., 0] ** 2 + xy[..., 1] ** 2) / radius**2
    return scale * (r2 - 1.0) ** 2


def ring_chord_barrier(a: Tensor, b: Tensor, scale: float = 1.0, radius: float = 1.0) -> float:
    """Closed-form maximum of :func:`ring_valley` on the segment between two points on the ring.

    The energy falls monotonically with the distance to the centre inside the ring, so the
    maximum sits at the segment point closest to the centre.
    """
    a64, b64 = a.double(), b.double()
    d = b64 - a64
    s = float(torch.clamp(-(a64 @ d) / (d @ d), 0.0, 1.0))
    closest = a64 + s * d
    return float(scale * (closest @ closest / radius**2 - 1.0) ** 2)


def double_well(xy: Tensor, scale: float = 1.0) -> Tensor:
    """Symmetric double well ``scale * ((x^2 - 1)^2 + y^2)``.

    Minima at ``(+-1, 0)`` (energy 0), saddle at the origin (energy ``scale``). Along the straight
    line between the minima, ``x = 2 alpha - 1`` and the energy is ``16 scale alpha^2 (1-alpha)^2``.
    """
    _check(xy)
    x, y = xy[..., 0], xy[..., 1]
    return scale * ((x * x - 1.0) ** 2 + y * y)


def refine_stationary_point(
    f: Callable[[Tensor], Tensor],
    xy: Tensor | tuple[float, float],
    steps: int = 50,
    tol: float = 1e-12,
) -> Tensor:
    """Newton's method on ``grad f = 0`` from a nearby guess, in float64.

    Converges to the nearby stationary point whatever its index (minimum or saddle), which turns
    rounded literature coordinates into machine-precision ground truth.
    """
    x = torch.as_tensor(xy, dtype=torch.float64).clone()
    grad_f, hess_f = torch.func.grad(f), torch.func.hessian(f)
    for _ in range(steps):
        g = grad_f(x)
        if float(g.norm()) < tol:
            return x
        x = x - torch.linalg.solve(hess_f(x), g)
    raise ValueError(
        f"Newton did not converge from {tuple(xy)} in {steps} steps: start closer to the point"
    )
