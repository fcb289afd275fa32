"""Eigenvalue density by stochastic Lanczos quadrature (SLQ).

Lin, Saad & Yang (2016), "Approximating Spectral Densities of Large Matrices"; applied to
network Hessians by Ghorbani, Krishnan & Xiao (2019), "An Investigation into Neural Net
Optimization via Hessian Eigenvalue Density". For a unit probe ``v``, ``m`` Lanczos steps from
``v`` give the Gauss quadrature of the spectral measure ``sum_i (v^T u_i)^2 delta(t - lambda_i)``:
nodes are the eigenvalues of ``T_m`` and weights the squared first components of its
eigenvectors (Golub & Meurant 2010, "Matrices, Moments and Quadrature with Applications").
With random ``v``, that measure has expectation ``(1/dim) sum_i delta(t - lambda_i)``, the
spectral density; averaging over probes and smoothing with a Gaussian gives a curve.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from losslands.curvature.lanczos import Krylov
from losslands.curvature.operators import Operator
from losslands.curvature.trace import probe_vectors


@dataclass
class SpectralDensity:
    """Result of :func:`slq_density`.

    Attributes:
        grid: Evaluation points, from the lowest node minus ``5 sigma`` to the highest plus
            ``5 sigma`` (float64).
        density: Gaussian-smoothed density on ``grid``; integrates to 1 (trapezoid) up to the
            mass of the Gaussian tails beyond ``5 sigma``.
        nodes: Per probe, the quadrature nodes (ascending, float64). Fewer than ``n_iters`` when
            the Krylov space became invariant, in which case the quadrature is exact.
        weights: Per probe, the quadrature weights (each list sums to 1).
        negative_mass: Mean over probes of the total weight on nodes ``< 0``: an estimate of the
            fraction of eigenvalues that are negative, ``#{lambda_i < 0} / dim``. With few
            Lanczos steps, nodes near 0 stand for many eigenvalues of both signs and carry
            large weights, so this jumps when such a node crosses 0.
        negative_mass_smoothed: The smoothed density's mass below 0,
            ``mean over probes of sum(w * Phi(-nodes / sigma))``: continuous in the nodes, so
            steadier than ``negative_mass``, and biased towards 1/2 for eigenvalues within a few
            ``sigma`` of 0.
        trace_estimate: ``dim * mean over probes of sum(w * nodes)``; as ``sum(w * nodes) =
            v^T A v`` for the unit probe ``v = z / sqrt(dim)``, this equals Hutchinson's
            estimate with the same Rademacher probes ``z``.
        sigma: Width of the smoothing Gaussian.
    """

    grid: Tensor
    density: Tensor
    nodes: list[Tensor]
    weights: list[Tensor]
    negative_mass: float
    trace_estimate: float
    sigma: float
    negative_mass_smoothed: float = float("nan")


def slq_density(
    op: Operator,
    *,
    n_vectors: int = 10,
    n_iters: int = 80,
    grid_size: int = 1000,
    sigma: float | None = None,
    seed: int = 0,
) -> SpectralDensity:
    """Estimate the eigenvalue density of a symmetric operator by SLQ.

    Args:
        op: Any object with ``dim`` and ``matvec``.
        n_vectors: Rademacher probes (each costs up to ``n_iters`` matvecs).
        n_iters: Lanczos steps per probe (capped at ``dim``).
        grid_size: Points of the density grid.
        sigma: Smoothing width; default ``1%`` of the spread of all nodes (Ghorbani et al. 2019
            smooth with a width that is small relative to the spectrum's range).
        seed: Seed of the probes (same probes as :func:`hutchinson_trace` with this seed).

    Returns:
        A :class:`SpectralDensity`.

    Raises:
        ValueError: A count below its minimum or a non-positive ``sigma``.
    """
    for name, value, low in (
        ("n_vectors", n_vectors, 1),
        ("n_iters", n_iters, 1),
        ("grid_size", grid_size, 2),
    ):
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name}={value!r} must be an integer >= {low}")
    if sigma is not None and not sigma > 0:
        raise ValueError(f"sigma={sigma!r} must be positive (or None for the default)")
    nodes, weights = [], []
    for z in probe_vectors(op, n_vectors, seed=seed):
        krylov = Krylov(op, z)
        for _ in range(min(n_iters, op.dim)):
            krylov.step()
            if krylov.breakdown:  # invariant subspace: the quadrature is already exact
                break
        theta, s = krylov.eigh()
        nodes.append(theta)
        weights.append(s[0].pow(2))
    everything = torch.cat(nodes)
    low, high = float(everything.min()), float(everything.max())
    if sigma is None:
        sigma = 0.01 * (high - low) if high > low else 0.01 * max(abs(high), 1.0)
    grid = torch.linspace(low - 5 * sigma, high + 5 * sigma, grid_size, dtype=torch.float64)
    density = torch.zeros_like(grid)
    for theta, w in zip(nodes, weights, strict=True):
        gauss = torch.exp(-0.5 * ((grid[:, None] - theta[None, :]) / sigma) ** 2)
        density += gauss @ w / (sigma * math.sqrt(2 * math.pi))
    density /= n_vectors
    return SpectralDensity(
        grid=grid,
        density=density,
        nodes=nodes,
        weights=weights,
        negative_mass=float(sum(float(w[t < 0].sum()) for t, w in zip(nodes, weights, strict=True)))
        / n_vectors,
        negative_mass_smoothed=float(
            sum(float(w @ torch.special.ndtr(-t / sigma)) for t, w in zip(nodes, weights, strict=True))
        )
        / n_vectors,
        trace_estimate=op.dim
        * sum(float(w @ t) for t, w in zip(nodes, weights, strict=True))
        / n_vectors,
        sigma=float(sigma),
    )
