"""Curvature of the loss: linear operators (:mod:`.operators`), Lanczos, trace, spectral density, gradient noise."""

from losslands.curvature.lanczos import LanczosResult, lanczos
from losslands.curvature.noise import GradientNoise, gradient_noise, per_sample_gradients
from losslands.curvature.operators import (
    DenseOperator,
    FlatHessian,
    HessianOperator,
    Operator,
    eval_mode,
)
from losslands.curvature.slq import SpectralDensity, slq_density
from losslands.curvature.trace import TraceResult, hutchinson_trace

__all__ = [
    "DenseOperator",
    "FlatHessian",
    "GradientNoise",
    "HessianOperator",
    "LanczosResult",
    "Operator",
    "SpectralDensity",
    "TraceResult",
    "eval_mode",
    "gradient_noise",
    "hutchinson_trace",
    "lanczos",
    "per_sample_gradients",
    "slq_density",
]
