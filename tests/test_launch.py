"""The launch environment: torchrun's variables, SLURM's translated, rank-private Hydra folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from losslands import launch
from losslands.launch import distributed_env, first_host

SLURM = {
    "SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_JOB_ID": "123456",
    "SLURM_JOB_NODELIST": "gpu-a[017-018,020],gpu-b3",
}


@pytest.mark.parametrize("nodelist, host", [
    ("node7", "node7"),
    ("node7,node8", "node7"),
    ("gpu-a[017-018,020],gpu-b3", "gpu-a017"),
    ("n[3,1-2]", "n3"),
    ("rack[2-3]-n[09-12]", "rack2-n09"),
])
def test_first_host_of_a_slurm_node_list(nodelist, host):
    assert first_host(nodelist) == host


def test_slurm_tasks_become_torchrun_variables():
    assert distributed_env(SLURM) == {
        "RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
        "MASTER_ADDR": "gpu-a017", "MASTER_PORT": str(10000 + 123456 % 20000),
    }
    # the step's own task count and node list win; a MASTER_ADDR/PORT already set is kept
    step = {**SLURM, "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_NODELIST": "gpu-b[4-5]",
            "MASTER_PORT": "4321"}
    env = distributed_env(step)
    assert (env["WORLD_SIZE"], env["MASTER_ADDR"], env["MASTER_PORT"]) == ("4", "gpu-b4", "4321")
    assert distributed_env({**SLURM, "MASTER_ADDR": "head"})["MASTER_ADDR"] == "head"


def test_single_process_environments_are_not_distributed():
    assert distributed_env({}) is None
    assert distributed_env({**SLURM, "SLURM_NTASKS": "1"}) is None  # e.g. hydra/launcher=slurm
    assert distributed_env({"RANK": "0", "WORLD_SIZE": "1"}) is None
    assert distributed_env({**SLURM, "LOSSLANDS_DISTRIBUTED": "0"}) is None


def test_torchrun_variables_win_over_slurm():
    env = {**SLURM, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
           "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    assert distributed_env(env) == {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1",
                                    "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}


def test_other_ranks_get_a_private_run_folder_and_sweeps_are_refused(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    argv = launch.hydra_overrides(["probe=lanczos", "hydra.run.dir=job"])
    run_dirs = [a for a in argv if a.startswith("hydra.run.dir=")]
    assert argv[0] == "probe=lanczos" and len(run_dirs) == 1
    private = Path(run_dirs[0].split("=", 1)[1])
    assert private.is_dir() and private.name.startswith("losslands-rank1-")
    assert "hydra.output_subdir=null" in argv and "hydra/job_logging=disabled" in argv
    monkeypatch.setenv("RANK", "0")
    assert launch.hydra_overrides(["hydra.run.dir=job"]) == ["hydra.run.dir=job"]
    with pytest.raises(SystemExit, match="one job per"):
        launch.hydra_overrides(["-m", "seed=0,1"])


def test_single_process_env_hides_and_restores_the_launcher(monkeypatch):
    for k, v in {**SLURM, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_WORLD_SIZE": "2"}.items():
        monkeypatch.setenv(k, v)
    with launch.single_process_env():
        assert not any(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE"))
        assert not any(k.startswith("SLURM_") for k in os.environ)
        assert distributed_env() is None
    assert os.environ["RANK"] == "1" and os.environ["SLURM_PROCID"] == "5"
