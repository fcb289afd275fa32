"""Reading a sweep folder: every job's training summary and probe results."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Job:
    """One job folder of a sweep."""

    path: Path
    summary: dict[str, Any]
    probes: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def optimizer(self) -> str:
        return self.summary["config"]["optimizer"]["name"]

    @property
    def seed(self) -> int:
        return int(self.summary["config"]["seed"])


def _read(path: Path) -> dict[str, Any] | None:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, json.JSONDecodeError):
        return None


def load_sweep(sweep_dir: str | Path) -> list[Job]:
    """All jobs below ``sweep_dir`` that have a ``train_summary.json`` (sorted by path).

    Unreadable files (e.g. a job killed mid-write, which atomic writes make unlikely) are
    skipped rather than failing the whole report.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep folder at {sweep_dir}: pass the folder Hydra wrote (multirun/<name>)")
    jobs = []
    for summary_path in sorted(sweep_dir.rglob("train_summary.json")):
        if "cache" in summary_path.parts:
            continue
        summary = _read(summary_path)
        if summary is None:
            continue
        job = Job(summary_path.parent, summary)
        for p in sorted((summary_path.parent / "probes").glob("*.json")):
            rec = _read(p)
            if rec is not None:
                job.probes[rec.get("probe", p.stem)] = rec
        jobs.append(job)
    return jobs


def trainings(jobs: list[Job]) -> list[dict[str, Any]]:
    """One training summary per training hash (jobs sharing a training are counted once)."""
    seen: dict[str, dict[str, Any]] = {}
    for j in jobs:
        seen.setdefault(j.summary.get("hash", str(j.path)), j.summary)
    return list(seen.values())


def probe_records(jobs: list[Job], probe: str) -> list[dict[str, Any]]:
    """Completed records of one probe, one per (training, probe config)."""
    seen: dict[str, dict[str, Any]] = {}
    for j in jobs:
        rec = j.probes.get(probe)
        if rec and rec.get("status") == "completed":
            seen.setdefault(rec.get("probe_key") or str(j.path), rec)
    return list(seen.values())
