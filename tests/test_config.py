"""The config tree composes, every option instantiates, and bad options fail clearly."""

from __future__ import annotations

import numpy as np
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
    # model=custom is a template for your own class: give it one
    extra = ("model._target_=tests.models.nets.Net",) if name == "custom" else ()
    cfg = compose_cfg(tmp_path, f"model={name}", *extra)
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


BAD_VALUES = [
    ("trainer.max_epochs=0", "trainer.max_epochs=0", ">= 1"),
    ("optimizer.lr=-0.1", "optimizer.lr=-0.1", ">= 0"),
    ("seed=-1", "seed=-1", "0..4294967295"),
    ("seed=4294967296", "seed=4294967296", "0..4294967295"),
]


@pytest.mark.parametrize("override, key, allowed", BAD_VALUES)
def test_bad_values_are_refused_before_data_loading(tmp_path, monkeypatch, override, key, allowed):
    """Each bad value fails fast, naming the key and the allowed range, with no data read."""
    import time

    from losslands.config import InvalidConfig
    from losslands.data.datamodule import CIFAR10DataModule
    from losslands.task import run
    from losslands.training import fit
    from tests.conftest import TINY

    def no_data(*args, **kwargs):
        raise AssertionError("data was loaded for an invalid config")

    monkeypatch.setattr(CIFAR10DataModule, "prepare_data", no_data)
    monkeypatch.setattr(CIFAR10DataModule, "setup", no_data)
    cfg = compose_cfg(tmp_path, *TINY, override)
    for call in (run, fit.train_or_reuse, fit.build_datamodule):
        start = time.perf_counter()
        with pytest.raises(InvalidConfig, match=key) as err:
            call(cfg)
        assert time.perf_counter() - start < 1.0, call
        assert allowed in str(err.value)
    assert not (tmp_path / "cache").exists()


def test_cli_refuses_a_bad_seed_before_training(tmp_path):
    r = run_cli("seed=-1", "data=synthetic", "logger=none", "hydra.run.dir=job", cwd=tmp_path,
                ok=False, timeout=120)
    assert r.returncode != 0
    assert "seed=-1" in r.stderr and "0..4294967295" in r.stderr
    assert not (tmp_path / "cache").exists()


def test_validation_accepts_every_shipped_combination(tmp_path):
    from losslands.config import validate_job_config

    # data=tensors needs your file and its number of classes
    np.savez(tmp_path / "own.npz", train_x=np.zeros((4, 2)), train_y=np.zeros(4, int),
             test_x=np.zeros((2, 2)), test_y=np.zeros(2, int))
    own = (f"data.path={tmp_path / 'own.npz'}", "data.num_classes=2")
    for experiment in options("experiment"):
        for data in options("data"):
            extra = own if data == "tensors" else ()
            cfg = compose_cfg(tmp_path, f"experiment={experiment}", f"data={data}", *extra)
            validate_job_config(cfg)


def test_smoke_experiment_composes_with_synthetic_data(tmp_path):
    """The two quick options together: smoke's subsets fit the synthetic splits."""
    from losslands.training.fit import build_datamodule

    cfg = compose_cfg(tmp_path, "experiment=smoke", "data=synthetic")
    dm = build_datamodule(cfg)
    assert dm.train_x.shape[0] == cfg.data.train_subset
    assert dm.test_x.shape[0] == cfg.data.val_subset


def test_cross_seed_study_pairs_each_seed_with_the_next(tmp_path):
    from omegaconf import OmegaConf

    from losslands.config import next_seed, register_resolvers

    register_resolvers()
    for seed, partner in ((0, 1), (1, 2), (2, 0)):
        cfg = compose_cfg(tmp_path, "experiment=study_cpu_cross", f"seed={seed}", "optimizer=adamw")
        assert OmegaConf.to_container(cfg.probe.other, resolve=True) == {"optimizer": "adamw", "seed": partner}
        assert cfg.probe.name == "interpolation"
    for probe in ("curve", "autoneb"):  # every pairwise probe gets the same partner
        cfg = compose_cfg(tmp_path, "experiment=study_cpu_cross", "seed=2", "optimizer=sgd", f"probe={probe}")
        assert OmegaConf.to_container(cfg.probe.other, resolve=True) == {"optimizer": "sgd", "seed": 0}
        assert cfg.probe.name == probe and cfg.probe.n_samples == 1000  # the CPU size (probe_size/cpu_<probe>)
    with pytest.raises(ValueError, match="outside 0..2"):
        next_seed(3, 3)
