"""Data-parallel probes: a path probe on 2 gloo processes equals one process; the CLI under
torchrun writes its files from rank 0 only and its numbers equal a single-process run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import torch
from torch import nn

from losslands.curvature.distributed import Shard
from losslands.data.loader import TensorSplits
from losslands.evaluate import PointEvaluator
from losslands.flat import get_flat
from losslands.probes import interpolation
from losslands.probes.base import ProbeContext
from losslands.probes.runner import run_probe
from tests.conftest import TINY, run_cli
from tests.curvature.test_distributed import free_port, spawn

PATH_CFG = {"n_samples": 45, "test_samples": 31, "n_points": 6, "bn_batches": 2,
            "other": {"seed": 1}}


def bn_net(seed: int) -> nn.Module:
    """Conv - BatchNorm - ReLU - Linear on 3x8x8 images (BatchNorm recomputed along the path)."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Conv2d(3, 4, 3, stride=2), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.Flatten(), nn.Linear(4 * 9, 5)).eval()


def path_context(shard: Shard | None) -> ProbeContext:
    g = torch.Generator().manual_seed(0)
    train = (torch.randn(60, 3, 8, 8, generator=g), torch.randint(0, 5, (60,), generator=g))
    test = (torch.randn(40, 3, 8, 8, generator=g), torch.randint(0, 5, (40,), generator=g))
    other = bn_net(1)
    return ProbeContext(model=bn_net(0), data=TensorSplits(train, test, transform=None),
                        batch_size=16, eval_batch_size=20, optimizer_name="sgd", quiet=True,
                        load_other=lambda overrides: other, shard=shard)


def path_outputs(ctx: ProbeContext, out: str | None) -> dict:
    """The interpolation record, and the evaluation loss and its gradient that AutoNEB and the
    Bézier curve use, at a point off the line."""
    record = run_probe("interpolation", ctx, interpolation.Config(**PATH_CFG), out=out)
    evaluator = PointEvaluator(ctx.model, ctx.loss_fn, ctx.bn_batches(2), shard=ctx.shard)
    theta = (get_flat(ctx.model) * 0.7).requires_grad_(True)
    value = evaluator.loss(ctx.probe_batches(45))(theta)
    (grad,) = torch.autograd.grad(value, theta)
    return {"result": record["result"], "loss": float(value.detach()), "grad": grad}


def _path_worker(rank: int, world: int, out: str) -> None:
    got = path_outputs(path_context(Shard.current()), f"{out}/rank{rank}")
    torch.save(got, f"{out}/rank{rank}.pt")


def test_interpolation_and_evaluation_loss_equal_one_process_and_rank_0_writes(tmp_path):
    torch.set_num_threads(1)
    spawn(_path_worker, 2, str(tmp_path))
    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=False) for r in range(2)]
    ref = path_outputs(path_context(None), None)
    assert ranks[0]["result"] == ranks[1]["result"]
    got = ranks[0]["result"]
    assert got["n_train"] == 45 and got["n_test"] == 31 and got["bn_recomputed"]
    for key in ("train_loss", "test_loss"):
        assert got[key] == pytest.approx(ref["result"][key], rel=1e-6)
    for key in ("train_acc", "test_acc"):
        assert got[key] == ref["result"][key]
    assert got["barrier"] == pytest.approx(ref["result"]["barrier"], rel=1e-5, abs=1e-7)
    assert ranks[0]["loss"] == pytest.approx(ref["loss"], rel=1e-6)
    torch.testing.assert_close(ranks[0]["grad"], ref["grad"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ranks[1]["grad"], ranks[0]["grad"], rtol=0, atol=0)
    assert (tmp_path / "rank0" / "probes" / "interpolation.json").exists()
    assert not (tmp_path / "rank1").exists()


LANCZOS = ("probe=lanczos", "probe.n_samples=64", "probe.repeats=2", "probe.max_repeats=2",
           "probe.certify_iters=5", "probe.k=2", "probe.max_iters=12",
           "probe.hutchinson_samples=3", "probe.slq_vectors=1", "probe.slq_iters=8")


def torchrun(*args: str, cwd: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    torchrun_bin = Path(sys.executable).with_name("torchrun")
    return subprocess.run(
        [str(torchrun_bin), f"--nproc_per_node={nproc}", f"--master_port={free_port()}",
         "-m", "losslands", *args],
        cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )


def _rank_dirs() -> set[str]:
    return {p.name for p in Path(tempfile.gettempdir()).glob("losslands-rank*")}


def test_cli_under_torchrun_writes_from_rank_0_only_and_equals_one_process(tmp_path):
    before = _rank_dirs()
    r = torchrun(*TINY, *LANCZOS, "hydra.run.dir=job", cwd=tmp_path)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    # rank 1's Hydra folder was private and is gone; nothing else was written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache", "job"]
    assert _rank_dirs() <= before
    assert sorted(p.name for p in (tmp_path / "job" / "probes").iterdir()) == ["lanczos.json",
                                                                             "lanczos.png"]
    dist_record = json.loads((tmp_path / "job" / "probes" / "lanczos.json").read_text())
    assert dist_record["status"] == "completed"

    run_cli(*TINY, *LANCZOS, "hydra.run.dir=one", cwd=tmp_path)  # reuses the cached weights
    one = json.loads((tmp_path / "one" / "probes" / "lanczos.json").read_text())
    assert dist_record["probe_key"] == one["probe_key"]
    for a, b in zip(dist_record["result"]["per_repeat"], one["result"]["per_repeat"], strict=True):
        assert a["top"] == pytest.approx(b["top"], rel=1e-5)
        assert a["bottom"] == pytest.approx(b["bottom"], rel=1e-5)
        assert a["trace"] == pytest.approx(b["trace"], rel=1e-5)
        assert a["matvecs"] == b["matvecs"]


def test_a_bad_config_under_torchrun_is_reported_once(tmp_path):
    r = torchrun(*TINY, "probe=lanczos", "probe.k=0", "hydra.run.dir=job", cwd=tmp_path)
    assert r.returncode != 0
    assert (r.stdout + r.stderr).count("probe.k=0 must be") == 1, r.stderr[-3000:]
    assert not (tmp_path / "cache").exists()  # stopped before any training


def test_submitit_launcher_with_two_tasks_runs_one_data_parallel_job(tmp_path):
    # hydra/launcher=local_dist: slurm_dist's code path (every task runs the job, the rendezvous
    # comes from the launcher's environment) with submitit's local executor
    run_cli("-m", *TINY, *LANCZOS, "hydra/launcher=local_dist", "hydra.sweep.dir=sweep",
            cwd=tmp_path)
    jobs = [p for p in (tmp_path / "sweep").iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(jobs) == 1
    record = json.loads((jobs[0] / "probes" / "lanczos.json").read_text())
    assert record["status"] == "completed" and record["scalars"]["lambda_max"] > 0
    task_logs = "".join(p.read_text() for p in (tmp_path / "sweep" / ".submitit").glob("*/*_log.out"))
    assert "global_rank=1(2)" in task_logs
