"""Stochastic trace estimation from matrix-vector products.

Hutchinson (1989), "A Stochastic Estimator of the Trace of the Influence Matrix for Laplacian
Smoothing Splines": for random ``z`` with ``E[z z^T] = I``, ``E[z^T A z] = tr(A)``. Avron &
Toledo (2011), "Randomized Algorithms for Estimating the Trace of an Implicit Symmetric Positive
Semi-definite Matrix": Rademacher probes have the least variance, ``2 sum_{i != j} A_ij^2``
per sample, against ``2 |A|_F^2`` for Gaussian ones.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from losslands.curvature.operators import Operator, operator_dtype_device

DISTRIBUTIONS = ("rademacher", "gaussian")


def probe_vectors(
    op: Operator, n: int, *, seed: int, distribution: str = "rademacher"
) -> Iterator[Tensor]:
    """``n`` random probes ``z`` with ``E[z z^T] = I``, drawn on the CPU in float64 so seeds agree
    across devices, then cast to the operator's dtype and device.

    Raises:
        ValueError: Unknown ``distribution``.
    """
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution={distribution!r} is not one of {DISTRIBUTIONS}")
    dtype, device = operator_dtype_device(op)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(n):
        if distribution == "rademacher":
            z = torch.randint(0, 2, (op.dim,), generator=generator).to(torch.float64) * 2 - 1
        else:
            z = torch.randn(op.dim, generator=generator, dtype=torch.float64)
        yield z.to(dtype=dtype, device=device)


@dataclass
class TraceResult:
    """A Hutchinson trace estimate.

    Attributes:
        trace: Mean of the per-probe estimates ``z^T A z``.
        stderr: Their sample standard deviation (``ddof=1``) over ``sqrt(n_samples)``.
        samples: The per-probe estimates (float64).
    """

    trace: float
    stderr: float
    samples: Tensor


def hutchinson_trace(
    op: Operator, *, n_samples: int = 100, seed: int = 0, distribution: str = "rademacher"
) -> TraceResult:
    """Estimate ``tr(A)`` as the mean of ``z^T A z`` over random probes.

    Args:
        op: Any object with ``dim`` and ``matvec``.
        n_samples: Number of probes (matvecs); at least 2, for the standard error.
        seed: Seed of the probes.
        distribution: ``"rademacher"`` (entries +-1) or ``"gaussian"``.

    Returns:
        A :class:`TraceResult`.

    Raises:
        ValueError: ``n_samples < 2`` or unknown ``distribution``.
    """
    if not isinstance(n_samples, int) or n_samples < 2:
        raise ValueError(
            f"n_samples={n_samples!r} must be an integer >= 2 to give a standard error"
        )
    samples = torch.tensor(
        [
            float(torch.dot(z.double(), op.matvec(z).double()))
            for z in probe_vectors(op, n_samples, seed=seed, distribution=distribution)
        ],
        dtype=torch.float64,
    )
    return TraceResult(
        trace=float(samples.mean()),
        stderr=float(samples.std() / n_samples**0.5),
        samples=samples,
    )
