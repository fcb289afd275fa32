"""The config tree composes, every option instantiates, and bad options fail clearly."""

from __future__ import annotations

import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from losslands.config import conf_dir
from losslands.training.fit import build_model, build_optimizer
from tests.conftest import compose_cfg, run_cli


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (conf_dir() / group).glob("*.yaml"))


def test_defaults(tmp_path):
    cfg = compose_cfg(tmp_path)
    assert cfg.data.name == "cifar10" and cfg.model.name == "small_cnn"
    assert cfg.optimizer.name == "sgd" and cfg.seed == 42 and cfg.probe.name == "lanczos"
    assert cfg.trainer.max_epochs == 12 and cfg.data.batch_size == 128
    assert cfg.experiment is None if "experiment" in cfg else True


@pytest.mark.parametrize("name", options("model"))
def test_every_model_builds(tmp_path, name):
    cfg = compose_cfg(tmp_path, f"model={name}")
    model = build_model(cfg)
    assert model(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


def test_small_cnn_parameter_count(tmp_path):
    model = build_model(compose_cfg(tmp_path, "model=small_cnn"))
    assert sum(p.numel() for p in model.parameters()) == 183_242


EXPECTED = {
    "sgd": (torch.optim.SGD, 0.01, 5e-4, 0.0),
    "momentum": (torch.optim.SGD, 0.01, 5e-4, 0.9),
    "adamw": (torch.optim.AdamW, 1e-3, 1e-2, None),
    "adam": (torch.optim.Adam, 1e-3, 0.0, None),
}


@pytest.mark.parametrize("name", options("optimizer"))
def test_optimizer_hyperparameters_reach_the_optimizer(tmp_path, name):
    cfg = compose_cfg(tmp_path, f"optimizer={name}")
    cls, lr, wd, momentum = EXPECTED[name]
    p = torch.nn.Parameter(torch.ones(3))
    opt = build_optimizer(cfg)([p])
    assert type(opt) is cls
    group = opt.param_groups[0]
    assert group["lr"] == lr and group["weight_decay"] == wd
    if momentum is not None:
        assert group["momentum"] == momentum
    # Behaviour, not only bookkeeping: with a zero loss gradient only weight decay moves p.
    p.grad = torch.zeros(3)
    opt.step()
    if cls is torch.optim.AdamW:
        expected = 1 - lr * wd  # decoupled decay: p <- p (1 - lr wd)
    elif cls is torch.optim.SGD:
        expected = 1 - lr * wd  # L2 gradient wd * p, first step without momentum history
    else:
        expected = 1.0 if wd == 0 else None
    if expected is not None:
        torch.testing.assert_close(p.detach(), torch.full((3,), expected), rtol=0, atol=1e-7)


@pytest.mark.parametrize("group", ["data", "trainer", "probe", "logger", "callbacks", "experiment"])
def test_every_option_composes(tmp_path, group):
    for name in options(group):
        cfg = compose_cfg(tmp_path, f"{group}={name}")
        OmegaConf.to_container(cfg.data, resolve=True)


def test_data_config_instantiates(tmp_path):
    cfg = compose_cfg(tmp_path, "data=synthetic")
    d = OmegaConf.to_container(cfg.data, resolve=True)
    d.pop("name")
    dm = instantiate(d)
    assert dm.batch_size == 128


def test_unknown_option_lists_valid_ones(tmp_path):
    r = run_cli("optimizer=adamx", "--cfg", "job", cwd=tmp_path, ok=False, timeout=120)
    assert r.returncode != 0
    msg = r.stdout + r.stderr
    assert "adamx" in msg and "adamw" in msg and "momentum" in msg


def test_cli_finds_configs_from_any_directory(tmp_path):
    r = run_cli("optimizer=adamw", "--cfg", "job", cwd=tmp_path, timeout=120)
    assert "AdamW" in r.stdout and "weight_decay: 0.01" in r.stdout
