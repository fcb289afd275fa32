"""The benchmark scripts still run (at toy sizes, untimed): `make bench` must not rot.

Speed itself is never asserted here; the scripts print ratios measured side by side.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

CASES = {
    "curvature": ["--samples", "4", "--train-steps", "2", "--repeats", "1", "--ref-tol", "1e-8",
                  "--threads", "1"],
    "distributed": ["--samples", "16", "--processes", "2", "--repeats", "1", "--k", "1",
                    "--max-iters", "6", "--certify-iters", "3", "--trace-samples", "2"],
    "layers_and_ggn": ["--samples", "16", "--subsets", "2", "--k", "1", "--device", "cpu"],
    "paths": ["--samples", "32", "--batch", "16", "--steps", "1", "--skip-projections"],
    "spectrum": ["--samples", "8", "--train-steps", "2", "--repeats", "1", "--k", "2",
                 "--ref-trace-samples", "3", "--trace-samples", "2", "--pyhessian-top", "1",
                 "--threads", "1"],
    "spectrum_vs_n": ["--ns", "8", "16", "--subsets", "2", "--k", "2", "--trace-samples", "2",
                      "--threads", "1"],
    "subspace": ["--D", "4096", "--d", "64", "--kinds", "dense", "fastfood", "sparse"],
    "train_throughput": ["--steps", "1", "--warmup", "1", "--repeats", "1",
                         "--batch-size", "16", "--device", "cpu", "--threads", "1"],
}


VARIANTS = {  # other modes of the same scripts
    "spectrum --variance-only": ("spectrum", ["--variance-only", "--samples", "8", "--k", "2",
                                              "--ref-trace-samples", "3", "--trace-samples", "2"]),
}


@pytest.mark.parametrize("name", sorted(CASES) + sorted(VARIANTS))
def test_benchmark_runs(name, tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOSSLANDS_CIFAR10_ROOT", None)  # random data: the check is that the script runs
    script, args = VARIANTS.get(name, (name, CASES.get(name)))
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(proc.stdout.splitlines()) > 3, proc.stdout


def test_curvature_benchmark_on_given_weights(tmp_path):
    import torch

    from losslands.models.small_cnn import SmallCNN

    torch.manual_seed(0)
    torch.save(SmallCNN().state_dict(), tmp_path / "model.pt")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOSSLANDS_CIFAR10_ROOT", None)
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "curvature.py"), *CASES["curvature"],
         "--sections", "eig", "--weights", str(tmp_path / "model.pt")],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"model: weights {tmp_path / 'model.pt'}" in proc.stdout
