"""The report aggregates exactly what the jobs wrote."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from losslands.io import write_json
from losslands.report import load_sweep, write_report
from losslands.report.tables import epochs_to_fraction, fmt, mean_std


def _fake_sweep(root, values):
    """Jobs with known numbers: values[(opt, seed)] = (val_acc, lambda_max)."""
    for i, ((opt, seed), (acc, lam)) in enumerate(sorted(values.items())):
        for probe in ("eval", "lanczos"):
            job = root / f"{i}_{opt}-s{seed}-{probe}"
            history = [{"epoch": e, "val/acc": acc * e / 3, "train/acc": acc, "val/loss": 1.0, "train/loss": 1.0} for e in (1, 2, 3)]
            write_json(job / "train_summary.json", {
                "status": "completed", "hash": f"h{opt}{seed}", "config": {"optimizer": {"name": opt}, "seed": seed},
                "final": history[-1] | {}, "history": history, "train_seconds": 10.0,
            })
            scalars = {"test_acc": acc} if probe == "eval" else {"lambda_max": lam, "lambda_min": -lam / 10}
            write_json(job / "probes" / f"{probe}.json", {
                "probe": probe, "status": "completed", "optimizer": opt, "seed": seed, "probe_key": f"{opt}{seed}{probe}",
                "scalars": scalars, "result": {}, "seconds": 1.0,
            })


def test_mean_std_matches_numpy():
    xs = [1.0, 2.5, 4.0]
    m, sd, n = mean_std(xs + [float("nan"), None])
    assert n == 3 and m == pytest.approx(np.mean(xs)) and sd == pytest.approx(np.std(xs, ddof=1))
    assert mean_std([])[2] == 0 and fmt(*mean_std([])) == "–"
    assert mean_std([3.0]) == (3.0, 0.0, 1)


def test_epochs_to_fraction():
    h = [{"epoch": 1, "val/acc": 0.5}, {"epoch": 2, "val/acc": 0.85}, {"epoch": 3, "val/acc": 0.9}]
    assert epochs_to_fraction(h) == 2  # 0.85 >= 0.9 * 0.9
    assert epochs_to_fraction([]) is None


def test_report_tables_and_csv(tmp_path):
    values = {("sgd", 0): (0.5, 10.0), ("sgd", 1): (0.6, 14.0), ("adamw", 0): (0.7, 30.0), ("adamw", 1): (0.72, 50.0)}
    _fake_sweep(tmp_path, values)
    jobs = load_sweep(tmp_path)
    assert len(jobs) == 8
    report = write_report(tmp_path)
    text = report.read_text()
    for opt in ("sgd", "adamw"):
        lams = [lam for (o, _), (_, lam) in values.items() if o == opt]
        assert fmt(*mean_std(lams)) in text  # the spectrum cell for this optimizer
        accs = [acc for (o, _), (acc, _) in values.items() if o == opt]
        assert fmt(*mean_std(accs)) in text  # val/acc in the training table
    assert "## Definitions" in text and "training_curves.png" in text
    assert (tmp_path / "figures" / "training_curves.png").stat().st_size > 1000
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    lam_rows = [r for r in rows if r["probe"] == "lanczos" and r["metric"] == "lambda_max"]
    assert sorted(float(r["value"]) for r in lam_rows) == sorted(lam for _, lam in values.values())
    assert all(math.isfinite(float(r["value"])) for r in lam_rows)


def test_failed_probe_is_listed(tmp_path):
    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0)})
    write_json(tmp_path / "9_sgd-s0-noise" / "train_summary.json",
               {"status": "completed", "hash": "hsgd0", "config": {"optimizer": {"name": "sgd"}, "seed": 0}, "final": {}})
    write_json(tmp_path / "9_sgd-s0-noise" / "probes" / "noise.json", {"probe": "noise", "status": "failed", "optimizer": "sgd", "seed": 0})
    text = write_report(tmp_path).read_text()
    assert "did not complete" in text and "noise" in text


def test_missing_sweep_dir_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="multirun"):
        write_report(tmp_path / "nope")


def test_curvature_during_training_figure(tmp_path):
    """Jobs trained with callbacks=probes carry probe_history; the report plots it per optimizer."""
    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0), ("adamw", 0): (0.7, 30.0)})
    assert not (write_report(tmp_path).parent / "figures" / "curvature_during_training.png").exists()
    for summary in tmp_path.glob("*/train_summary.json"):
        data = json.loads(summary.read_text())
        data["probe_history"] = [{"epoch": e, "lambda_max": 10.0 * e, "trace": 100.0 * e, "noise_ratio": 1.0} for e in (1, 2, 3)]
        write_json(summary, data)
    text = write_report(tmp_path).read_text()
    assert "curvature_during_training.png" in text
    assert (tmp_path / "figures" / "curvature_during_training.png").stat().st_size > 1000
