"""Sweeps: reruns skip finished jobs, a failing job keeps the others, submitit runs jobs."""

from __future__ import annotations

from losslands.io import read_json
from tests.conftest import TINY, run_cli


def test_rerun_skips_finished_jobs_and_reruns_missing_ones(tmp_path):
    args = ("-m", *TINY, "trainer.max_epochs=1", "optimizer=sgd,adamw", "hydra.sweep.dir=sweep")
    run_cli(*args, cwd=tmp_path)
    results = sorted((tmp_path / "sweep").glob("*/probes/eval.json"))
    assert len(results) == 2
    before = {p: p.stat().st_mtime_ns for p in results}
    results[1].unlink()  # as if that job had been killed
    r = run_cli(*args, cwd=tmp_path)
    assert "already done" in r.stdout + r.stderr
    assert results[0].stat().st_mtime_ns == before[results[0]]  # not recomputed
    assert read_json(results[1])["status"] == "completed"  # recomputed


def test_one_failing_job_does_not_lose_the_others(tmp_path):
    r = run_cli("-m", *TINY, "trainer.max_epochs=1", "optimizer.lr=0.01,1e30", "hydra.sweep.dir=sweep", cwd=tmp_path, ok=False)
    assert r.returncode != 0
    assert "optimizer.lr" in r.stdout + r.stderr  # the divergence message names the fix
    done = [read_json(p) for p in (tmp_path / "sweep").glob("*/probes/eval.json")]
    assert [d["status"] for d in done] == ["completed"]


def test_submitit_local_launcher(tmp_path):
    run_cli("-m", *TINY, "trainer.max_epochs=1", "hydra/launcher=local", "seed=0,1", "hydra.sweep.dir=sweep", cwd=tmp_path)
    done = sorted((tmp_path / "sweep").glob("*/probes/eval.json"))
    assert {read_json(p)["seed"] for p in done} == {0, 1}
