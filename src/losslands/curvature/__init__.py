"""Curvature of the loss: Hessian operators, Lanczos, trace, spectral density, gradient noise."""

from losslands.curvature.hessian import DenseOperator, HessianOperator, eval_mode
from losslands.curvature.lanczos import LanczosResult, lanczos
from losslands.curvature.noise import GradientNoise, gradient_noise, per_sample_gradients
from losslands.curvature.slq import SpectralDensity, slq_density
from losslands.curvature.trace import TraceResult, hutchinson_trace

__all__ = [
    "DenseOperator",
    "GradientNoise",
    "HessianOperator",
    "LanczosResult",
    "SpectralDensity",
    "TraceResult",
    "eval_mode",
    "gradient_noise",
    "hutchinson_trace",
    "lanczos",
    "per_sample_gradients",
    "slq_density",
]
