"""The analysis notebook runs top to bottom against a sweep folder."""

from __future__ import annotations

import nbformat
import pytest
from nbclient import NotebookClient

from losslands.config import conf_dir
from tests.report.test_report import _fake_sweep

NOTEBOOK = conf_dir().parent / "notebooks" / "analysis.ipynb"


def test_notebook_is_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    assert all(not c.get("outputs") and not c.get("execution_count") for c in nb.cells if c.cell_type == "code")


def test_notebook_executes_on_a_sweep(tmp_path, monkeypatch):
    _fake_sweep(tmp_path / "sweep", {("sgd", 0): (0.5, 10.0), ("sgd", 1): (0.6, 12.0), ("adamw", 0): (0.7, 30.0)})
    monkeypatch.setenv("LOSSLANDS_SWEEP", str(tmp_path / "sweep"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(str(o) for c in nb.cells for o in c.get("outputs", []))
    assert "lambda_max" in outputs and "image/png" in outputs and "Error" not in outputs


@pytest.mark.slow
def test_notebook_executes_on_the_smoke_study(tmp_path, monkeypatch, cifar_root):
    """Runs the whole smoke study (about 15 minutes on 2 cores), then the notebook on it."""
    import subprocess
    import sys

    r = subprocess.run([sys.executable, "-m", "losslands", "-m", "experiment=smoke_study", f"data.root={cifar_root}",
                        "logger=csv", "hydra.sweep.dir=sweep"], cwd=tmp_path, capture_output=True, text=True, timeout=3600)
    assert r.returncode == 0, r.stderr[-3000:]
    monkeypatch.setenv("LOSSLANDS_SWEEP", str(tmp_path / "sweep"))
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
