"""Probes: small modules on one protocol (see :mod:`losslands.probes.base`)."""

from losslands.probes.base import ProbeContext, available_probes, evaluate, load_probe

__all__ = ["ProbeContext", "available_probes", "evaluate", "load_probe"]
