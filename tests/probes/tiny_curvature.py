"""Shared ground-truth builders for the curvature probe tests (not a test file).

A BatchNorm CNN small enough (a few hundred parameters) for dense float64 Hessians and per-sample
gradient loops on CIFAR-shaped synthetic images, a :class:`ProbeContext` around it, and probe
configs read from ``conf/probe/<name>.yaml`` with overrides.
"""

from __future__ import annotations

import copy
from types import ModuleType

import pytest
import torch
from omegaconf import OmegaConf
from torch import Tensor, nn

from losslands.config import conf_dir, coupled_weight_decay
from losslands.data.datamodule import CIFAR10DataModule
from losslands.flat import flat_loss, get_flat
from losslands.probes.base import ProbeConfig, ProbeContext, make_config

SGD = {"_target_": "torch.optim.SGD", "name": "sgd", "lr": 0.1, "weight_decay": 5e-4}
ADAMW = {"_target_": "torch.optim.AdamW", "name": "adamw", "lr": 1e-3, "weight_decay": 1e-2}


def tiny_cnn(seed: int = 0, convex: bool = False) -> nn.Module:
    """Conv(3->2, stride 4) - BatchNorm - Tanh - AvgPool - Linear: 150 parameters.

    BatchNorm gets non-trivial running statistics so eval mode matters. ``convex``: pooled
    pixels into a linear layer (logistic regression, 130 parameters), whose loss is convex.
    """
    torch.manual_seed(seed)
    if convex:
        return nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(12, 10))
    model = nn.Sequential(
        nn.Conv2d(3, 2, 3, stride=4),
        nn.BatchNorm2d(2),
        nn.Tanh(),
        nn.AdaptiveAvgPool2d(2),
        nn.Flatten(),
        nn.Linear(8, 10),
    )
    with torch.no_grad():
        model[1].running_mean.copy_(torch.tensor([0.3, -0.2]))
        model[1].running_var.copy_(torch.tensor([1.5, 0.7]))
        model[1].weight.copy_(torch.tensor([1.3, 0.8]))
        model[1].bias.copy_(torch.tensor([0.1, -0.4]))
    return model.eval()


def datamodule(n_train: int = 600, batch_size: int = 32) -> CIFAR10DataModule:
    dm = CIFAR10DataModule(
        synthetic=True, synthetic_train=n_train, synthetic_test=20, batch_size=batch_size
    )
    dm.setup()
    return dm


def context(
    model: nn.Module, optimizer: dict | None = None, n_train: int = 600, batch_size: int = 32
) -> ProbeContext:
    optimizer = optimizer or SGD
    return ProbeContext(
        model=model.float().eval(),
        data=datamodule(n_train, batch_size).splits,
        device=torch.device("cpu"),
        batch_size=batch_size,
        optimizer_name=optimizer["name"],
        coupled_weight_decay=coupled_weight_decay(optimizer),
        seed=0,
        quiet=True,
    )


def probe_cfg(name: str, **overrides) -> ProbeConfig:
    """The typed config of ``conf/probe/<name>.yaml`` with keys replaced (range-checked)."""
    cfg = OmegaConf.load(conf_dir() / "probe" / f"{name}.yaml")
    cfg.pop("defaults", None)
    options = OmegaConf.to_container(cfg, resolve=False)
    options.update(overrides)
    return make_config(name, options)


def assert_refused(probe: ModuleType, overrides: dict, message: str) -> None:
    """Probe ``probe`` refuses its YAML config with the keys ``overrides`` replaced (when the
    config is built, or when it runs on :func:`tiny_cnn`), with a ValueError matching
    ``message``."""
    name = probe.__name__.rsplit(".", 1)[-1]
    with pytest.raises(ValueError, match=message):
        probe.run(context(tiny_cnn()), probe_cfg(name, **overrides))


def dense_hessian(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """``torch.func.hessian`` of the mean cross-entropy in float64 on an eval-mode copy."""
    ref = copy.deepcopy(model).double().eval()
    f = flat_loss(ref, nn.CrossEntropyLoss(), (x.double(), y))
    return torch.func.hessian(f)(get_flat(ref))
