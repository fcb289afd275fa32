"""Wall time of a study sweep and of each probe.

    python benchmarks/study.py [--experiment smoke_study] [--data-root DIR] [hydra overrides...]

Runs the sweep in a fresh temporary folder (own training cache), then prints the total wall
time, the training time per optimizer and the mean time per probe, read from the jobs' own
records (``train_summary.json`` ``train_seconds``, ``probes/<probe>.json`` ``seconds``).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

from losslands.report.load import load_sweep, trainings
from losslands.report.tables import mean_std


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--experiment", default="smoke_study")
    parser.add_argument("--data-root", default=os.environ.get("LOSSLANDS_CIFAR10_ROOT"))
    parser.add_argument("--keep", help="write the sweep here instead of a temporary folder")
    args, overrides = parser.parse_known_args()
    work = Path(args.keep or tempfile.mkdtemp(prefix="losslands-study-"))
    work.mkdir(parents=True, exist_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "losslands",
        "-m",
        f"experiment={args.experiment}",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        f"dirs.cache={work / 'cache'}",
        f"hydra.sweep.dir={work / 'sweep'}",
    ]
    if args.data_root:
        cmd.append(f"data.root={args.data_root}")
    cmd += overrides
    print("running:", " ".join(cmd), flush=True)
    start = time.perf_counter()
    r = subprocess.run(cmd, cwd=work)
    wall = time.perf_counter() - start
    jobs = load_sweep(work / "sweep")
    print(f"\nsweep: {len(jobs)} jobs in {wall:.0f} s wall (exit code {r.returncode})")
    per_opt = defaultdict(list)
    for s in trainings(jobs):
        per_opt[s["config"]["optimizer"]["name"]].append(s.get("train_seconds", float("nan")))
    print(f"{'training':<16}{'mean s':>10}{'std':>8}{'n':>4}")
    for opt, xs in per_opt.items():
        m, sd, n = mean_std(xs)
        print(f"{opt:<16}{m:>10.1f}{sd:>8.1f}{n:>4}")
    per_probe = defaultdict(list)
    for j in jobs:
        for name, rec in j.probes.items():
            if rec.get("status") == "completed":
                per_probe[name].append(rec["seconds"])
    print(f"{'probe':<16}{'mean s':>10}{'std':>8}{'n':>4}{'share of wall':>15}")
    for name, xs in sorted(per_probe.items()):
        m, sd, n = mean_std(xs)
        print(f"{name:<16}{m:>10.1f}{sd:>8.1f}{n:>4}{sum(xs) / wall:>14.1%}")
    sys.exit(r.returncode)


if __name__ == "__main__":
    main()
