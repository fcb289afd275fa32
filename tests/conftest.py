"""Shared fixtures: composing the project's configs as the CLI would, and running the CLI."""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra

from losslands.config import conf_dir, register_configs
from losslands.io import read_json

CIFAR_ENV = "LOSSLANDS_CIFAR10_ROOT"


def compose_cfg(tmp_path: Path, *overrides: str):
    """The job config for ``overrides``, with data/cache/output under ``tmp_path``."""
    GlobalHydra.instance().clear()
    register_configs()
    with initialize_config_dir(config_dir=str(conf_dir()), version_base="1.3"):
        return compose(
            config_name="config",
            overrides=[
                f"dirs.root={tmp_path}",
                f"dirs.output={tmp_path / 'out'}",
                f"dirs.cache={tmp_path / 'cache'}",
                *overrides,
            ],
        )


TINY = (
    "data=synthetic",
    "data.synthetic_train=256",
    "data.synthetic_test=128",
    "data.batch_size=64",
    "model=mlp",
    "trainer=cpu",
    "trainer.max_epochs=2",
    "trainer.enable_progress_bar=false",
    "logger=none", "probe=eval",
)


def run_cli(*args: str, cwd: Path, ok: bool = True, timeout: float = 600):
    """Run ``python -m losslands *args`` in ``cwd`` and return the completed process.

    The child runs on one OpenMP thread: on the loaded 2-core test machine, contending threads
    make small ops many times slower. With ``ok``, a non-zero exit fails the test with the tail
    of the child's output.
    """
    r = subprocess.run(
        [sys.executable, "-m", "losslands", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    if ok:
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return r


def run_probe_cli(tmp_path: Path, probe: str, *overrides: str) -> Path:
    """Run ``probe=<probe>`` through the CLI on the ``TINY`` job in ``tmp_path``; return the job
    folder."""
    run_cli(*TINY, f"probe={probe}", *overrides, "hydra.run.dir=job", cwd=tmp_path)
    return tmp_path / "job"


def assert_probe_outputs(job_dir: Path, probe: str, scalars, *, exact: bool = True) -> dict:
    """Check what a CLI run wrote for ``probe`` in ``job_dir``; return the JSON record.

    The record must say ``completed`` and report the scalars ``scalars`` (exactly these, or at
    least these when not ``exact``), and the figure must be a non-empty file.
    """
    record = read_json(job_dir / "probes" / f"{probe}.json")
    assert record["status"] == "completed", record
    reported = set(record["scalars"])
    assert reported == set(scalars) if exact else reported >= set(scalars), reported
    assert (job_dir / "probes" / f"{probe}.png").stat().st_size > 0
    module = importlib.import_module(f"losslands.probes.{probe}")
    if hasattr(module, "lines"):  # W&B line plots: one point per x, at least one line each
        for name, (xname, series) in module.lines(record["result"]).items():
            assert isinstance(xname, str) and series, name
            for label, (xs, ys) in series.items():
                assert len(xs) == len(ys) > 0, (name, label)
    return record


@pytest.fixture(scope="module")
def one_thread():
    """Run a test module on one CPU thread: on a loaded 2-core machine, small autograd ops are ~20x
    faster than with two contending threads. Restores the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


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
        pytest.skip(
            f"real CIFAR-10 not available: set {CIFAR_ENV} to a folder holding cifar-10-batches-py"
        )
    return Path(root)
