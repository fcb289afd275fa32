"""Paths between parameter vectors: linear interpolation, NEB, AutoNEB and Bézier curves.

All functions work on flat 1-D parameter vectors and loss callables ``loss(theta)`` (or
``loss(theta, batch)`` for the stochastic methods); see :mod:`losslands.flat` for turning a model
into that form. :mod:`losslands.paths.potentials` holds analytic 2-D test potentials.
"""

from losslands.paths.autoneb import AutoNEBResult, Insertion, autoneb
from losslands.paths.bezier import BezierResult, bezier_curve, bezier_point
from losslands.paths.interpolation import (
    InterpolationResult,
    default_alphas,
    entezari_barrier,
    interpolate,
    linear_interpolation,
)
from losslands.paths.neb import NEBResult, improved_tangents, neb, neb_forces

__all__ = [
    "AutoNEBResult",
    "BezierResult",
    "Insertion",
    "InterpolationResult",
    "NEBResult",
    "autoneb",
    "bezier_curve",
    "bezier_point",
    "default_alphas",
    "entezari_barrier",
    "improved_tangents",
    "interpolate",
    "linear_interpolation",
    "neb",
    "neb_forces",
]
