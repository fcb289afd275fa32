"""Extreme eigenpairs of a symmetric operator by the Lanczos method.

Lanczos (1950), "An Iteration Method for the Solution of the Eigenvalue Problem of Linear
Differential and Integral Operators"; the recurrence, Ritz pairs and residual bound follow
Golub & Van Loan (2013), "Matrix Computations", 4th ed., ch. 10, and Paige (1972), "Computational
Variants of the Lanczos Method for the Eigenproblem". Every new basis vector is
reorthogonalised against all previous ones (twice: Parlett 1998, "The Symmetric Eigenvalue
Problem", sec. 6.9), which prevents the spurious copies of converged eigenvalues that plain
Lanczos produces, at ``O(m * dim)`` work and memory for ``m`` iterations.

Over ~300 lines: the recurrence, its driver and the error bounds share one state.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import eigh_tridiagonal
from torch import Tensor

from losslands.curvature.operators import Operator, operator_dtype_device

WHICH = ("both", "top", "bottom")
STOPS = ("residual", "eigenvalue")


class Krylov:
    """The Lanczos recurrence ``A Q_m = Q_m T_m + beta_m q_{m+1} e_m^T`` with full reorthogonalisation.

    Holds the orthonormal basis ``Q`` (rows, in the operator's dtype) and the tridiagonal ``T``
    (float64). When ``beta`` vanishes, ``span(Q)`` is invariant and the recurrence stops; callers
    may :meth:`restart` with a fresh direction orthogonal to ``Q``, which makes ``T`` block
    diagonal (needed to see repeated eigenvalues).

    Args:
        op: The operator.
        start: Non-zero start vector (normalised here).
        lock: Orthonormal rows the basis is kept orthogonal to (deflation by locking: rounding
            cannot grow components along them, as it would along an extreme eigenvalue).
    """

    def __init__(self, op: Operator, start: Tensor, lock: Tensor | None = None) -> None:
        self.op = op
        self.dim = int(op.dim)
        self.dtype, self.device = operator_dtype_device(op)
        self._basis = torch.empty(min(self.dim, 32), self.dim, dtype=self.dtype, device=self.device)
        self.alphas: list[float] = []
        self.couplings: list[float] = []  # off-diagonal of T; 0 where a restart decoupled blocks
        self.dropped: list[tuple[int, float]] = []  # (row, beta) at each restart, for residuals
        self.beta = 0.0  # norm of the current residual vector, the next coupling
        self.scale = 0.0  # running estimate of |A|, for the breakdown test
        self.lock = None if lock is None or lock.numel() == 0 else lock.to(self.dtype).to(self.device)
        start = self._unlock(start.to(dtype=self.dtype, device=self.device))
        self._next: Tensor | None = start / start.norm()
        self._eps = torch.finfo(self.dtype).eps

    @property
    def m(self) -> int:
        """Number of basis vectors (= matvecs so far)."""
        return len(self.alphas)

    @property
    def basis(self) -> Tensor:
        return self._basis[: self.m]

    @property
    def breakdown(self) -> bool:
        """Whether the last residual vanished to rounding: ``span(Q)`` is an invariant subspace."""
        return self.beta <= 100 * self._eps * self.scale

    def _unlock(self, w: Tensor) -> Tensor:
        if self.lock is not None:
            w = w - self.lock.T @ (self.lock @ w)
        return w

    def _orthogonalise(self, w: Tensor) -> Tensor:
        q = self.basis
        for _ in range(2):  # "twice is enough" (Kahan; Parlett 1998, sec. 6.9)
            w = self._unlock(w - q.T @ (q @ w))
        return w

    def step(self) -> None:
        """One matvec: append ``q_{m+1}``, its ``alpha`` and the new ``beta``."""
        m = self.m
        if m == self._basis.shape[0]:
            grown = torch.empty(
                min(2 * m, self.dim), self.dim, dtype=self.dtype, device=self.device
            )
            grown[:m] = self._basis
            self._basis = grown
        q = self._next
        if q is None:
            raise RuntimeError("the Krylov space is invariant or full: restart() before step()")
        self._basis[m] = q
        if m > 0:
            self.couplings.append(self.beta)
        w = self.op.matvec(q).to(self.dtype)
        alpha = float(torch.dot(q, w))
        self.alphas.append(alpha)
        w = self._orthogonalise(w)
        self.beta = float(w.norm())
        self.scale = max(self.scale, abs(alpha), self.beta)
        self._next = None if self.breakdown or self.m >= self.dim else w / self.beta

    def restart(self, generator: torch.Generator) -> bool:
        """Continue from a random direction orthogonal to ``Q``; False if ``Q`` spans everything."""
        if self.m >= self.dim:
            return False
        w = self._orthogonalise(random_vector(self.dim, generator, self.dtype, self.device))
        norm = float(w.norm())
        if norm <= math.sqrt(self._eps):
            return False
        self.dropped.append((self.m - 1, self.beta))
        self.beta = 0.0
        self._next = w / norm
        return True

    def eigh(self) -> tuple[Tensor, Tensor]:
        """Eigenvalues (ascending) and eigenvectors (columns) of ``T_m``, float64 on the CPU.

        A tridiagonal solver (LAPACK ``stemr`` via SciPy) keeps the per-step cost ``O(m^2)``.
        """
        if self.m == 1:
            return torch.tensor(self.alphas, dtype=torch.float64), torch.ones(
                1, 1, dtype=torch.float64
            )
        theta, s = eigh_tridiagonal(np.asarray(self.alphas), np.asarray(self.couplings))
        return torch.from_numpy(theta), torch.from_numpy(s)

    def ritz(self) -> tuple[Tensor, Tensor, Tensor]:
        """Ritz values (ascending), their ``T``-eigenvectors (columns) and residual estimates.

        The estimate of ``|A Q s - theta Q s|`` is ``|beta_m s_m|`` (Paige 1972), plus the
        couplings dropped at restarts, which act the same way.
        """
        theta, s = self.eigh()
        est = (self.beta * s[-1]).pow(2)
        for row, beta in self.dropped:
            est += (beta * s[row]).pow(2)
        return theta, s, est.sqrt()

    def vectors(self, s: Tensor) -> Tensor:
        """Map ``T``-eigenvectors (columns of ``s``) to unit rows ``(Q s)^T`` in the op dtype."""
        v = s.T.to(self.dtype).to(self.device) @ self.basis
        return v / v.norm(dim=1, keepdim=True)


def random_vector(
    dim: int, generator: torch.Generator, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """A standard normal vector drawn on the CPU (so seeds agree across devices)."""
    return torch.randn(dim, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)


@dataclass
class LanczosResult:
    """Extreme eigenpairs of a symmetric operator.

    Attributes:
        top: The ``k`` largest eigenvalues, descending (float64).
        bottom: The ``k`` smallest eigenvalues, ascending (float64).
        top_vectors: ``k x dim`` unit eigenvectors matching ``top`` (operator dtype).
        bottom_vectors: ``k x dim`` unit eigenvectors matching ``bottom``.
        top_residuals: ``|A v - theta v|`` for each top pair: computed with one extra matvec per
            pair when ``true_residuals`` (the default), else the Lanczos estimate.
        bottom_residuals: Likewise for the bottom pairs.
        iterations: Lanczos steps (Krylov dimension).
        matvecs: Operator products in total, residual checks included.
        converged: Whether the stopping test passed: every watched pair's residual *estimate*
            (or eigenvalue error bound, with ``stop="eigenvalue"``) met the tolerance (or the
            basis spans the space). The true residuals are in
            ``top_residuals``/``bottom_residuals``; with float32 products they can sit above the
            estimate, at the rounding level of one matvec.
        top_bounds: Error bounds ``|lambda - theta|`` of the top Ritz values:
            ``min(r, r^2 / gap)`` with ``r`` the residual and ``gap`` the distance to the
            nearest other Ritz value (Parlett 1998, sec. 11.7; Saad 2011, "Numerical Methods for
            Large Eigenvalue Problems", Thm. 6.1 / Kato-Temple): the ``r^2/gap`` form holds once
            the gap is resolved, the residual always.
        bottom_bounds: Likewise for the bottom Ritz values.
        nodes: Every Ritz value of the run, ascending (float64): with ``weights``, the Gauss
            quadrature of the start vector's spectral measure (an SLQ probe for free).
        weights: Squared first components of the ``T`` eigenvectors (sum to 1).
        top_index: Positions of ``top`` in ``nodes``; ``bottom_index`` likewise.
    """

    top: Tensor
    bottom: Tensor
    top_vectors: Tensor
    bottom_vectors: Tensor
    top_residuals: Tensor
    bottom_residuals: Tensor
    iterations: int
    matvecs: int
    converged: bool
    top_bounds: Tensor | None = None
    bottom_bounds: Tensor | None = None
    nodes: Tensor | None = None
    weights: Tensor | None = None
    top_index: Tensor | None = None
    bottom_index: Tensor | None = None


def eigenvalue_bounds(theta: Tensor, residuals: Tensor) -> Tensor:
    """``min(r_i, r_i^2 / gap_i)``: bounds on ``|lambda - theta_i|`` for Ritz values ``theta``
    (ascending) with residual norms ``residuals``; ``gap_i`` is the distance from ``theta_i`` to
    the nearest other Ritz value (the residual alone where there is no other)."""
    if theta.numel() < 2:
        return residuals.clone()
    diffs = (theta[:, None] - theta[None, :]).abs()
    diffs.fill_diagonal_(math.inf)
    gap = diffs.min(dim=1).values
    quad = torch.where(gap > residuals, residuals.pow(2) / gap, residuals)
    return torch.minimum(residuals, quad)


def lanczos(
    op: Operator,
    k: int = 3,
    *,
    max_iters: int = 200,
    tol: float = 1e-6,
    seed: int = 0,
    true_residuals: bool = True,
    which: str = "both",
    stop: str = "residual",
    start: Tensor | None = None,
    lock: Tensor | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> LanczosResult:
    """The ``k`` largest and ``k`` smallest eigenpairs of a symmetric operator.

    Stops when every one of the ``2k`` extreme Ritz pairs (or the ``k`` of one end, see
    ``which``) has estimated residual
    ``|beta_m s_m| <= tol * max|theta|``, when the Krylov space spans the whole space (exact
    answer), or after ``max_iters`` steps (then warns and reports the residuals reached). An
    invariant subspace found early (``beta ~ 0``) is exact; the iteration continues from a
    random orthogonal direction so repeated eigenvalues can appear more than once.

    Args:
        op: Any object with ``dim`` and ``matvec`` (optionally ``dtype``, ``device``).
        k: Eigenpairs per end; the two ends never share a pair, so ``2k <= dim``.
        max_iters: Most Lanczos steps (capped at ``dim``); at least ``2k``.
        tol: Relative residual tolerance.
        seed: Seed of the random start vector.
        true_residuals: Report ``|A v - theta v|`` at ``2k`` extra matvecs instead of estimates.
        which: Pairs the stopping test waits for: ``"both"`` ends, only the ``"top"`` or only
            the ``"bottom"``. Both ends are returned either way, the other one as reached.
        stop: ``"residual"``: stop on the residual estimates (eigenvectors accurate to
            ``tol``); ``"eigenvalue"``: stop on the eigenvalue error bounds
            (:func:`eigenvalue_bounds`), which are about the square of the residuals once the
            gaps are resolved, so the values converge in fewer steps than the vectors.
        start: Start vector (default: a seeded standard normal one). Pass a Rademacher vector
            to make the run's quadrature (``nodes``, ``weights``) an SLQ probe.
        lock: Orthonormal rows to keep the Krylov basis orthogonal to (see :class:`Krylov`).
        progress: Called as ``progress(iteration, max_relative_residual_estimate)`` each step.

    Returns:
        A :class:`LanczosResult`.

    Raises:
        ValueError: ``k``, ``max_iters``, ``tol`` or ``which`` out of range.
    """
    dim = int(op.dim)
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k={k!r} must be a positive integer")
    if 2 * k > dim:
        raise ValueError(
            f"k={k} asks for {2 * k} distinct extreme eigenpairs but dim={dim}; use k <= {dim // 2}"
        )
    if not isinstance(max_iters, int) or max_iters < 2 * k:
        raise ValueError(f"max_iters={max_iters!r} must be an integer >= 2k = {2 * k}")
    if not tol > 0:
        raise ValueError(f"tol={tol!r} must be positive")
    if which not in WHICH:
        raise ValueError(f"which={which!r} is not one of {WHICH}")
    if stop not in STOPS:
        raise ValueError(f"stop={stop!r} is not one of {STOPS}")
    dtype, device = operator_dtype_device(op)
    generator = torch.Generator().manual_seed(seed)
    if start is None:
        start = random_vector(dim, generator, dtype, device)
    elif start.shape != (dim,) or not float(start.norm()) > 0:
        raise ValueError(f"start must be a non-zero vector of length {dim}")
    krylov = Krylov(op, start, lock=lock)
    steps = min(max_iters, dim)
    converged = False
    while True:
        krylov.step()
        theta, s, est = krylov.ritz()
        m = krylov.m
        watched = _watched(m, k, which)
        scale = float(theta.abs().max())
        err = est if stop == "residual" else eigenvalue_bounds(theta, est)
        worst = float(err[watched].max())
        relative = worst / scale if scale > 0 else 0.0
        if progress is not None:
            progress(m, relative)
        if m >= 2 * k and worst <= tol * scale:
            converged = True
            break
        if m >= dim:
            converged = True  # Q spans the space: T is similar to A
            break
        if m >= steps:
            break
        if krylov.breakdown and not krylov.restart(generator):
            converged = True
            break
    if not converged:
        warnings.warn(
            f"lanczos: the extreme Ritz pairs ({which}, k={k}) did not converge in {m} iterations (max "
            f"relative {'residual' if stop == 'residual' else 'eigenvalue error bound'} "
            f"{relative:.2e} > tol={tol:.1e}); raise max_iters or tol",
            RuntimeWarning,
            stacklevel=2,
        )
    top_idx = torch.arange(m - 1, m - 1 - k, -1)
    bottom_idx = torch.arange(k)
    top_vectors = krylov.vectors(s[:, top_idx])
    bottom_vectors = krylov.vectors(s[:, bottom_idx])
    matvecs = m
    if true_residuals:
        top_res = _residuals(op, top_vectors, theta[top_idx])
        bottom_res = _residuals(op, bottom_vectors, theta[bottom_idx])
        matvecs += 2 * k
    else:
        top_res, bottom_res = est[top_idx], est[bottom_idx]
    # the bounds use the larger of the estimated and the true residual (rounding can leave the
    # true one above the estimate)
    res_all = est.clone()
    res_all[top_idx] = torch.maximum(res_all[top_idx], top_res)
    res_all[bottom_idx] = torch.maximum(res_all[bottom_idx], bottom_res)
    bounds = eigenvalue_bounds(theta, res_all)
    return LanczosResult(
        top=theta[top_idx],
        bottom=theta[bottom_idx],
        top_vectors=top_vectors,
        bottom_vectors=bottom_vectors,
        top_residuals=top_res,
        bottom_residuals=bottom_res,
        iterations=m,
        matvecs=matvecs,
        converged=converged,
        top_bounds=bounds[top_idx],
        bottom_bounds=bounds[bottom_idx],
        nodes=theta,
        weights=s[0].pow(2),
        top_index=top_idx,
        bottom_index=bottom_idx,
    )


def _watched(m: int, k: int, which: str) -> Tensor:
    """Indices, among ``m`` ascending Ritz values, of those the stopping test watches."""
    if m <= 2 * k:
        return torch.arange(m)
    bottom, top = torch.arange(k), torch.arange(m - k, m)
    return {"both": torch.cat([bottom, top]), "top": top, "bottom": bottom}[which]


def _residuals(op: Operator, vectors: Tensor, values: Tensor) -> Tensor:
    out = [
        float((op.matvec(v) - float(value) * v).norm())
        for v, value in zip(vectors, values, strict=True)
    ]
    return torch.tensor(out, dtype=torch.float64)
