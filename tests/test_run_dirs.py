"""Run folders: identical jobs started in the same second never share one."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import TINY

# Resolves the shipped hydra.run.dir with the clock pinned, as two jobs started in the same
# second see it.
_RESOLVE_RUN_DIR = """
from omegaconf import OmegaConf
from losslands.config import conf_dir, register_resolvers
register_resolvers()
OmegaConf.register_new_resolver("now", lambda fmt: "same-second", replace=True)
raw = OmegaConf.to_container(OmegaConf.load(conf_dir() / "config.yaml"), resolve=False)
cfg = OmegaConf.create({"dir": raw["hydra"]["run"]["dir"], "optimizer": {"name": "sgd"},
                        "seed": 42, "probe": {"name": "eval"}})
print(cfg.dir)
"""


def test_run_dir_is_unique_per_process():
    procs = [subprocess.Popen([sys.executable, "-c", _RESOLVE_RUN_DIR], stdout=subprocess.PIPE, text=True)
             for _ in range(2)]
    dirs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert dirs[0].startswith("outputs/same-second/same-second_sgd-s42-eval")
    assert dirs[0] != dirs[1]


def _read_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


def test_two_identical_jobs_started_at_once_keep_their_own_metrics(tmp_path):
    """Both jobs finish, each in its own folder with a complete metrics.csv (one trains, the
    other reuses the cache: each CSV holds that job's final metrics, the trainer's every epoch)."""
    args = [sys.executable, "-m", "losslands", *TINY, "trainer.max_epochs=2", "logger=csv", "probe=none"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    procs = [subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    jobs = sorted(p.parent.parent for p in tmp_path.glob("outputs/*/*/csv/metrics.csv"))
    assert len(jobs) == 2, list(tmp_path.rglob("*"))
    epochs_logged = []
    for job in jobs:
        summary = json.loads((job / "train_summary.json").read_text())
        rows = _read_csv(job / "csv" / "metrics.csv")
        final = [r for r in rows if r.get("final/val_acc")]
        assert len(final) == 1, rows
        for k, v in summary["final"].items():
            assert float(final[0][f"final/{k.replace('/', '_')}"]) == v
        epochs_logged.append(sorted({r["epoch"] for r in rows if r.get("train/loss")}))
    assert sorted(epochs_logged) == [[], ["0", "1"]]
