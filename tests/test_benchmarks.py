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


def _run(script: str, args: list[str], cwd) -> str:
    """stdout of ``benchmarks/<script>.py args`` on random data, one thread; it must exit 0."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("LOSSLANDS_CIFAR10_ROOT", None)  # random data: the check is that the script runs
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / f"{script}.py"), *args],
        capture_output=True, text=True, cwd=cwd, env=env, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize("name", sorted(CASES) + sorted(VARIANTS))
def test_benchmark_runs(name, tmp_path):
    script, args = VARIANTS.get(name, (name, CASES.get(name)))
    stdout = _run(script, args, tmp_path)
    assert len(stdout.splitlines()) > 3, stdout


def test_curvature_benchmark_on_given_weights(tmp_path):
    import torch

    from losslands.models.small_cnn import SmallCNN

    torch.manual_seed(0)
    torch.save(SmallCNN().state_dict(), tmp_path / "model.pt")
    stdout = _run("curvature", [*CASES["curvature"], "--sections", "eig", "--weights",
                                str(tmp_path / "model.pt")], tmp_path)
    assert f"model: weights {tmp_path / 'model.pt'}" in stdout


def _vs_n(tmp_path, out, *extra):
    return _run("spectrum_vs_n", [*CASES["spectrum_vs_n"], "--out", str(out), *extra], tmp_path)


def test_spectrum_vs_n_resumes_from_its_rows(tmp_path):
    import json

    out = tmp_path / "rows.jsonl"
    first = _vs_n(tmp_path, out)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [(r["n"], r["subset"]) for r in rows] == [(8, 0), (8, 1), (16, 0), (16, 1)]
    table = [line for line in first.splitlines() if line.startswith("| init |")]
    assert len(table) == 2
    # a kill during the last append leaves a cut line: dropped, that subset computed again
    lines = out.read_text().splitlines()
    out.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:20])
    again = _vs_n(tmp_path, out)
    assert "dropped a last line cut short" in again

    def untimed(text, prefix):  # the lines, less their seconds (the only field that may differ)
        return [line.rsplit("|", 2)[0] if line.startswith("|") else line.rsplit(",", 1)[0]
                for line in text.splitlines() if line.startswith(prefix)]

    assert untimed(again, "# init") == untimed(first, "# init n=16 subset 1")
    # everything there: nothing computed, the same table from the stored rows
    third = _vs_n(tmp_path, out)
    assert not [line for line in third.splitlines() if line.startswith("# init")]
    assert untimed(third, "| init |") == untimed(first, "| init |")
    # another k is another measurement
    other = _vs_n(tmp_path, out, "--k", "1")
    assert len([line for line in other.splitlines() if line.startswith("# init")]) == 4


def test_spectrum_benchmark_runs_one_backend(tmp_path):
    stdout = _run("spectrum", [*CASES["spectrum"], "--backends", "losslands"], tmp_path)
    rows = [line.split()[0] for line in stdout.split("## Full output set")[1].splitlines()[2:]]
    assert rows[0] == "losslands" and "curvlinops" not in rows and "pyhessian" not in rows
    assert "over the certified values only" in stdout
    assert "Per-product time" not in stdout and "## Targets" not in stdout
