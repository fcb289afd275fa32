"""Extremes, trace and density of a symmetric operator from shared Krylov runs.

One call spends every product on all three outputs:

- **Extremes**: Lanczos (:func:`losslands.curvature.lanczos`) from a Rademacher start, stopped on
  eigenvalue error bounds or residuals.
- **Certification**: a second Lanczos run on the operator *deflated* by the extremes found
  (``P A P``, ``P = I - V V^T``), from a fresh random start. One start vector sees a repeated
  eigenvalue once and can step past a member of a tight cluster while every residual is small;
  the deflated run sees what was missed. An extreme value is *certified* when the deflated
  run's converged extreme at that end lies beyond it (nothing further out was found).
- **Trace** (Hutch++ family, Meyer, Musco, Musco & Woodruff 2021, "Hutch++: Optimal Stochastic
  Trace Estimation"): ``tr(A) = tr(V^T A V) + tr(P A P)`` for any orthonormal ``V``; the first
  term is exact (the Ritz values, by Rayleigh-Ritz), the second is estimated with Rademacher
  samples ``z^T P A P z``. Deflating the outliers removes most of the Frobenius mass, hence most
  of Hutchinson's variance. The start vectors of the Lanczos runs are samples too, at no cost:
  for the extremes' run the deflated sample is ``|z|^2 sum_{j not deflated} w_j theta_j`` over
  its quadrature (its Krylov space holds ``V``; used only once the extremes converged, as ``V``
  depends on that start); for a deflated run it is ``|Pz|^2 alpha_1``.
- **Density** (SLQ, Lin, Saad & Yang 2016; Ghorbani, Krishnan & Xiao 2019): point masses
  ``1/dim`` at the deflated Ritz values plus the quadrature of ``P A P`` over probes (the
  extremes' run with its deflated nodes dropped, the certification run, extra deflated runs),
  so the bulk is resolved with few steps instead of being stretched by the outliers.

Signs near zero: every softmax classifier's Hessian has an exact null space (shifting all logits
leaves the loss unchanged) whose Ritz nodes sit at rounding level with either sign.
``negative_mass`` counts only weight on nodes below ``-zero_tol * max|node|``; the weight within
``+-zero_tol * max|node|`` is ``near_zero_mass``.

Over ~300 lines: one algorithm whose four outputs share the same Krylov runs and products.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass, field

import torch
from torch import Tensor

from losslands.curvature.lanczos import Krylov, lanczos
from losslands.curvature.operators import Operator, operator_dtype_device
from losslands.curvature.trace import probe_vectors


class Deflated:
    """``P A P`` with ``P = I - V^T V`` for orthonormal rows ``V``: one product of ``A`` each."""

    def __init__(self, op: Operator, vectors: Tensor) -> None:
        self.op = op
        self.dim = int(op.dim)
        self.dtype, self.device = operator_dtype_device(op)
        self.vectors = vectors.to(dtype=self.dtype, device=self.device)
        self.n_matvecs = 0

    def project(self, v: Tensor) -> Tensor:
        """``P v``."""
        v = v.to(dtype=self.dtype, device=self.device)
        if self.vectors.numel() == 0:
            return v
        return v - self.vectors.T @ (self.vectors @ v)

    def matvec(self, v: Tensor) -> Tensor:
        self.n_matvecs += 1
        return self.project(self.op.matvec(self.project(v)).to(self.dtype))


@dataclass
class Spectrum:
    """Result of :func:`spectrum` (float64 values, plain lists for JSON).

    Attributes:
        top, bottom: the ``k`` largest (descending) / smallest (ascending) Ritz values.
        top_bounds, bottom_bounds: their eigenvalue error bounds (see ``lanczos``).
        top_residuals, bottom_residuals: ``|A v - theta v|``.
        top_certified, bottom_certified: per value, whether the deflated restart confirmed that
            nothing lies further out (see the module docstring).
        certified_by: how certification was done, or why it was not.
        converged: whether the extremes met ``tol``.
        trace, trace_stderr: the deflated estimate and its standard error.
        trace_exact_part: ``sum`` of the deflated Ritz values (exact part of the trace).
        trace_samples: the deflated samples ``z^T P A P z``.
        deflated: number of deflated pairs.
        nodes, weights: the density's atoms (point masses and bulk quadrature), weights summing
            to about 1 (``|Pz|^2 / dim`` per probe is random).
        negative_mass: weight on nodes below ``-zero_tol * max|node|``.
        near_zero_mass: weight within ``+-zero_tol * max|node|``.
        zero_tol: the ``tau`` used.
        matvecs: products spent, by output: ``extremes`` (incl. true residuals), ``certify``,
            ``trace`` (extra Hutchinson samples), ``density`` (extra SLQ probes).
        seconds: wall time by the same parts.
    """

    top: list[float]
    bottom: list[float]
    top_bounds: list[float]
    bottom_bounds: list[float]
    top_residuals: list[float]
    bottom_residuals: list[float]
    top_certified: list[bool]
    bottom_certified: list[bool]
    certified_by: str
    converged: bool
    iterations: int
    trace: float
    trace_stderr: float
    trace_exact_part: float
    trace_samples: list[float]
    deflated: int
    nodes: list[float]
    weights: list[float]
    negative_mass: float
    near_zero_mass: float
    zero_tol: float
    matvecs: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def density(self, grid_size: int = 500, sigma: float | None = None) -> tuple[Tensor, Tensor, float]:
        """The Gaussian-smoothed density ``(grid, density, sigma)``; ``sigma`` defaults to 1%
        of the spread of the bulk nodes (the outliers are point masses, not the scale)."""
        nodes = torch.tensor(self.nodes, dtype=torch.float64)
        weights = torch.tensor(self.weights, dtype=torch.float64)
        bulk = nodes[weights < weights.max()] if nodes.numel() > 1 else nodes
        lo, hi = float(nodes.min()), float(nodes.max())
        if sigma is None:
            spread = float(bulk.max() - bulk.min()) if bulk.numel() > 1 else 0.0
            sigma = 0.01 * spread if spread > 0 else 0.01 * max(abs(hi), abs(lo), 1e-12)
        grid = torch.linspace(lo - 5 * sigma, hi + 5 * sigma, grid_size, dtype=torch.float64)
        gauss = torch.exp(-0.5 * ((grid[:, None] - nodes[None, :]) / sigma) ** 2)
        return grid, gauss @ weights / (sigma * math.sqrt(2 * math.pi)), float(sigma)


def _rademacher(op: Operator, seed: int) -> Tensor:
    return next(iter(probe_vectors(op, 1, seed=seed)))


def _masses(nodes: Tensor, weights: Tensor, zero_tol: float) -> tuple[float, float]:
    scale = float(nodes.abs().max()) if nodes.numel() else 0.0
    cut = zero_tol * scale
    negative = float(weights[nodes < -cut].sum()) / float(weights.sum())
    near = float(weights[nodes.abs() <= cut].sum()) / float(weights.sum())
    return negative, near


def spectrum(
    op: Operator,
    k: int = 10,
    *,
    max_iters: int = 200,
    tol: float = 1e-4,
    stop: str = "eigenvalue",
    certify_iters: int = 30,
    trace_samples: int = 10,
    slq_vectors: int = 0,
    slq_iters: int = 30,
    zero_tol: float = 1e-4,
    seed: int = 0,
    batch: int = 1,
) -> Spectrum:
    """Extremes (certified), deflated trace ± s.e. and density of ``op`` (see the module).

    Args:
        op: symmetric operator (``dim``, ``matvec``).
        k: eigenvalues per end.
        max_iters: most steps of the extremes' Lanczos run.
        tol: relative tolerance of the stopping test (``stop``: ``"eigenvalue"`` bounds or
            ``"residual"`` estimates).
        stop: see :func:`losslands.curvature.lanczos`.
        certify_iters: steps of the deflated restart (0: no certification, nothing certified).
        trace_samples: extra deflated Hutchinson samples (one product each), beyond the free
            ones of the Lanczos runs.
        slq_vectors: extra deflated SLQ probes (``slq_iters`` products each).
        slq_iters: steps per extra SLQ probe.
        zero_tol: ``tau`` of the negative / near-zero masses.
        seed: seeds every random vector.
        batch: products per call for the extra trace samples, through ``op.matmat`` when the
            operator has it (batched backward passes: slower per vector than single products
            on a CPU, measured in ``benchmarks/spectrum.py``; the point is GPUs).

    Returns:
        A :class:`Spectrum`.
    """
    for name, value, low in (("certify_iters", certify_iters, 0), ("trace_samples", trace_samples, 0),
                             ("slq_vectors", slq_vectors, 0), ("slq_iters", slq_iters, 1)):
        if not isinstance(value, int) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name}={value!r} must be an integer >= {low}")
    if not 0 < zero_tol < 1:
        raise ValueError(f"zero_tol={zero_tol!r} must lie in (0, 1)")
    dim = int(op.dim)
    seconds: dict[str, float] = {}
    matvecs: dict[str, int] = {}

    # 1. extremes, from a Rademacher start so the run is also a probe
    t0 = time.perf_counter()
    z0 = _rademacher(op, seed)
    eig = lanczos(op, k, max_iters=max_iters, tol=tol, seed=seed, stop=stop, start=z0)
    seconds["extremes"], matvecs["extremes"] = time.perf_counter() - t0, eig.matvecs
    deflate = torch.cat([eig.top_vectors, eig.bottom_vectors])
    exact = float(eig.top.sum() + eig.bottom.sum())
    deflated_idx = torch.cat([eig.top_index, eig.bottom_index])
    keep = torch.ones(eig.nodes.numel(), dtype=torch.bool)
    keep[deflated_idx] = False
    z0_norm2 = float(z0.double().pow(2).sum())
    samples: list[float] = []
    probes: list[tuple[Tensor, Tensor]] = []
    if eig.converged:
        # A free deflated sample and probe from the extremes' run (its Krylov space holds V).
        # V was built from z0, so this sample is unbiased only once V is (nearly) fixed, i.e.
        # converged to eigenvectors; an unconverged run contributes nothing.
        samples.append(z0_norm2 * float((eig.weights[keep] * eig.nodes[keep]).sum()))
        probes.append((eig.nodes[keep], eig.weights[keep] * z0_norm2 / dim))
    dop = Deflated(op, deflate)

    # 2. certification by a deflated restart, also a deflated probe and trace sample
    top_cert, bottom_cert = [False] * k, [False] * k
    certified_by = "not certified (certify_iters=0)"
    t0 = time.perf_counter()
    remaining = dim - deflate.shape[0]
    if certify_iters > 0 and remaining >= 2:
        z = _rademacher(op, seed + 7919)
        pz = dop.project(z)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # judged by its residuals below
            rest = lanczos(dop, 1, max_iters=max(2, min(certify_iters, remaining)), tol=tol,
                           seed=seed + 7919, start=pz, lock=dop.vectors, true_residuals=False)
        pz_norm2 = float(pz.double().pow(2).sum())
        samples.append(pz_norm2 * float((rest.weights * rest.nodes).sum()))
        probes.append((rest.nodes, rest.weights * pz_norm2 / dim))
        # A Ritz value of the rest lies inside the rest's spectrum: if it passes a value by more
        # than their joint uncertainty, an eigenvalue was missed there. A tie (a repeated
        # eigenvalue found once) leaves the value itself certified and the next one not. The
        # check is probabilistic: a restart far from converged may not reach what was missed;
        # its residuals are reported in certified_by.
        mu_max, r_max = float(rest.top[0]), float(rest.top_residuals[0])
        mu_min, r_min = float(rest.bottom[0]), float(rest.bottom_residuals[0])
        top_cert = [mu_max <= float(v) + float(b) + r_max
                    for v, b in zip(eig.top, eig.top_bounds, strict=True)]
        bottom_cert = [mu_min >= float(v) - float(b) - r_min
                       for v, b in zip(eig.bottom, eig.bottom_bounds, strict=True)]
        certified_by = (f"deflated restart: {rest.iterations} Lanczos steps on (I-VV^T)A(I-VV^T) from "
                        f"a fresh start; its extremes {mu_min:.6g} (residual {r_min:.2g}) and "
                        f"{mu_max:.6g} (residual {r_max:.2g}) pass no certified value")
        matvecs["certify"] = rest.matvecs
    else:
        matvecs["certify"] = 0
    seconds["certify"] = time.perf_counter() - t0

    # 3. extra deflated Hutchinson samples
    t0 = time.perf_counter()
    before = dop.n_matvecs
    zs = [dop.project(z) for z in probe_vectors(op, trace_samples, seed=seed + 104729)]
    step = batch if batch > 1 and hasattr(op, "matmat") else 1
    for i in range(0, len(zs), step):
        block = zs[i : i + step]
        if step > 1:
            products = op.matmat(torch.stack(block))
        else:
            products = [op.matvec(block[0])]
        samples += [float(z.double() @ hz.double()) for z, hz in zip(block, products, strict=True)]
        dop.n_matvecs += len(block)
    matvecs["trace"] = dop.n_matvecs - before
    seconds["trace"] = time.perf_counter() - t0

    # 4. extra deflated SLQ probes (each also a trace sample)
    t0 = time.perf_counter()
    before = dop.n_matvecs
    for z in probe_vectors(op, slq_vectors, seed=seed + 15485863):
        pz = dop.project(z)
        krylov = Krylov(dop, pz, lock=dop.vectors)
        for _ in range(min(slq_iters, remaining)):
            krylov.step()
            if krylov.breakdown:  # invariant subspace: the quadrature is already exact
                break
        theta, vecs = krylov.eigh()
        w = vecs[0].pow(2)
        pz_norm2 = float(pz.double().pow(2).sum())
        samples.append(pz_norm2 * float((w * theta).sum()))
        probes.append((theta, w * pz_norm2 / dim))
    matvecs["density"] = dop.n_matvecs - before
    seconds["density"] = time.perf_counter() - t0

    if not samples:
        raise ValueError("no trace sample: raise trace_samples or certify_iters")
    s = torch.tensor(samples, dtype=torch.float64)
    stderr = float(s.std() / math.sqrt(len(samples))) if len(samples) > 1 else math.nan
    outliers = torch.cat([eig.top, eig.bottom])
    empty = torch.zeros(0, dtype=torch.float64)
    bulk_nodes = torch.cat([empty, *(n for n, _ in probes)])
    bulk_weights = torch.cat([empty, *(w for _, w in probes)]) / max(len(probes), 1)
    nodes = torch.cat([outliers, bulk_nodes])
    weights = torch.cat([torch.full_like(outliers, 1.0 / dim), bulk_weights])
    negative, near = _masses(nodes, weights, zero_tol)
    return Spectrum(
        top=eig.top.tolist(), bottom=eig.bottom.tolist(),
        top_bounds=eig.top_bounds.tolist(), bottom_bounds=eig.bottom_bounds.tolist(),
        top_residuals=eig.top_residuals.tolist(), bottom_residuals=eig.bottom_residuals.tolist(),
        top_certified=top_cert, bottom_certified=bottom_cert, certified_by=certified_by,
        converged=eig.converged, iterations=eig.iterations,
        trace=exact + float(s.mean()), trace_stderr=stderr, trace_exact_part=exact,
        trace_samples=s.tolist(), deflated=int(deflate.shape[0]),
        nodes=nodes.tolist(), weights=weights.tolist(),
        negative_mass=negative, near_zero_mass=near, zero_tol=zero_tol,
        matvecs=matvecs, seconds=seconds,
    )
