"""Shared fixtures: composing the project's configs as the CLI would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from losslands.config import conf_dir

CIFAR_ENV = "LOSSLANDS_CIFAR10_ROOT"


def compose_cfg(tmp_path: Path, *overrides: str):
    """The job config for ``overrides``, with data/cache/output under ``tmp_path``."""
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[
                f"paths.root={tmp_path}",
                f"paths.output={tmp_path / 'out'}",
                f"paths.cache={tmp_path / 'cache'}",
                *overrides,
            ],
        )


TINY = (
    "data=synthetic", "data.synthetic_train=256", "data.synthetic_test=128", "data.batch_size=64",
    "model=mlp", "trainer=cpu", "trainer.max_epochs=2", "trainer.enable_progress_bar=false",
    "logger=none",
)


@pytest.fixture
def tiny_cfg(tmp_path):
    """A tiny, fast, fully synthetic job config (no W&B)."""

    def make(*overrides: str):
        return compose_cfg(tmp_path, *TINY, *overrides)

    return make


@pytest.fixture
def cifar_root() -> Path:
    """The offline CIFAR-10 copy named by $LOSSLANDS_CIFAR10_ROOT (skips when absent)."""
    root = os.environ.get(CIFAR_ENV)
    if not root or not (Path(root) / "cifar-10-batches-py").is_dir():
        pytest.skip(f"real CIFAR-10 not available: set {CIFAR_ENV} to a folder holding cifar-10-batches-py")
    return Path(root)
