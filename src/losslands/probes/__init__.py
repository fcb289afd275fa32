"""Probes: small plain-Python modules on one protocol (see :mod:`losslands.probes.base`).

``losslands.probes.run("lanczos", model, train=(x, y), k=5)`` runs one on your own model and
tensors; nothing here imports Hydra, OmegaConf or Lightning.
"""

from losslands.probes.base import (
    ConfigError,
    ProbeConfig,
    ProbeContext,
    ProbeInfo,
    Scalar,
    available_probes,
    load_probe,
    make_config,
)
from losslands.probes.runner import run, run_probe

__all__ = [
    "ConfigError",
    "ProbeConfig",
    "ProbeContext",
    "ProbeInfo",
    "Scalar",
    "available_probes",
    "load_probe",
    "make_config",
    "run",
    "run_probe",
]
