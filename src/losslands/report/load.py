"""Reading a sweep folder: every job's training summary and probe results, and every job or
file that could not be used (so the report can list it instead of leaving it out)."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

# The report's optimizer order: tables, findings and figures name a pair in this order.
OPTIMIZER_ORDER = ["sgd", "momentum", "adamw", "adam"]


def canonical_pair(label: str) -> tuple[str, bool]:
    """``(name, reversed)`` of a pair label such as ``adamw-sgd``: the name in the report's
    optimizer order (``sgd-adamw``; optimizers it does not list follow, alphabetically), and
    whether the path was run in the other direction (its first end is the name's second
    optimizer). A label that is not two names joined by ``-`` stays as it is."""
    parts = label.split("-")
    if len(parts) != 2:
        return label, False
    rank = {o: i for i, o in enumerate(OPTIMIZER_ORDER)}
    ordered = sorted(parts, key=lambda o: (rank.get(o, len(rank)), o))
    return "-".join(ordered), ordered != parts


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


@dataclass
class Problem:
    """A job or file the report could not use as a result.

    ``status`` is the job's own word when it wrote one (``diverged``, ``interrupted``,
    ``failed``, ...), else ``unreadable`` (not JSON), ``wrong shape`` (JSON, but not what the
    job writes) or ``missing``.
    """

    job: str  # the job folder, relative to the sweep folder
    file: str  # relative to the job folder
    status: str
    error: str  # the first line of the error
    probe: str = ""  # "train" for the training summary, else the probe's name
    optimizer: str = ""
    seed: int | None = None


@dataclass
class Sweep:
    """What :func:`scan_sweep` found: the usable jobs and everything it could not use."""

    jobs: list[Job]
    problems: list[Problem]


def error_line(text: Any) -> str:
    """The first line of an error message; for a traceback, of its final exception."""
    lines = [line for line in str(text or "").splitlines() if line.strip()]
    if not lines:
        return ""
    if lines[0].startswith("Traceback"):
        # the exception follows the last indented line (a frame or its source line)
        frames = [i for i, line in enumerate(lines) if line[:1].isspace()]
        i = frames[-1] + 1 if frames else len(lines) - 1
        return lines[min(i, len(lines) - 1)].strip()
    return lines[0].strip()


class _Unusable(Exception):
    """A file that is not what a job writes: ``status`` says how."""

    def __init__(self, status: str, error: str):
        super().__init__(error)
        self.status, self.error = status, error


def _read(path: Path) -> Any:
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise _Unusable("unreadable", f"{type(e).__name__}: {error_line(e)}") from e


def _check_summary(summary: Any) -> dict[str, Any]:
    """``summary`` if it has what the report reads from a training summary."""
    if not isinstance(summary, dict):
        raise _Unusable("wrong shape", f"a JSON {type(summary).__name__}, not an object")
    config = summary.get("config")
    opt = config.get("optimizer") if isinstance(config, dict) else None
    if not (isinstance(opt, dict) and isinstance(opt.get("name"), str)):
        raise _Unusable("wrong shape", "no config.optimizer.name")
    if isinstance(config.get("seed"), bool) or not isinstance(config.get("seed"), int):
        raise _Unusable("wrong shape", f"config.seed is {config.get('seed')!r}, not an integer")
    for key, kind in (("status", str), ("final", dict), ("history", list)):
        if key in summary and not isinstance(summary[key], kind):
            raise _Unusable("wrong shape", f"{key} is a {type(summary[key]).__name__}")
    return summary


def _check_record(rec: Any) -> dict[str, Any]:
    """``rec`` if it has what the report reads from a probe record."""
    if not isinstance(rec, dict):
        raise _Unusable("wrong shape", f"a JSON {type(rec).__name__}, not an object")
    if not isinstance(rec.get("status"), str):
        raise _Unusable("wrong shape", "no status")
    for key, kind in (("scalars", dict), ("result", dict), ("optimizer", str), ("probe", str)):
        if rec.get(key) is not None and not isinstance(rec[key], kind):
            raise _Unusable("wrong shape", f"{key} is a {type(rec[key]).__name__}")
    return rec


_HASH = re.compile(r"[0-9a-f]{16}")


def is_training_cache_entry(folder: Path) -> bool:
    """Whether ``folder`` is an entry of the training cache (``training/cache.py``), not a job.

    A cache entry is named by its training hash and holds the training's files but, unlike a
    job folder, no ``.hydra`` and no ``probes``; wherever the cache lives, even in a sweep.
    """
    return (
        _HASH.fullmatch(folder.name) is not None
        and not (folder / ".hydra").exists()
        and not (folder / "probes").exists()
        and any((folder / f).exists() for f in ("train_summary.json", "model.pt", "last.ckpt"))
    )


def _job_folders(sweep_dir: Path) -> list[Path]:
    """Folders with a training summary, a probe result or Hydra's ``.hydra`` record."""
    found = {p.parent for p in sweep_dir.rglob("train_summary.json")}
    found |= {p.parent.parent for p in sweep_dir.rglob("probes/*.json")}
    found |= {p.parent.parent for p in sweep_dir.rglob(".hydra/config.yaml")}
    return sorted(f for f in found if not is_training_cache_entry(f))


def _hydra_config(folder: Path) -> dict[str, Any]:
    """The job's composed config as Hydra saved it (unresolved), or {}."""
    try:
        cfg = OmegaConf.to_container(OmegaConf.load(folder / ".hydra" / "config.yaml"), resolve=False)
    except Exception:  # absent or unreadable: the job is still reported from its other files
        return {}
    return cfg if isinstance(cfg, dict) else {}


def scan_sweep(sweep_dir: str | Path) -> Sweep:
    """Every job below ``sweep_dir`` and every job or file that cannot be used as a result.

    A job is a folder with ``train_summary.json``, ``probes/*.json`` or ``.hydra/config.yaml``
    (training-cache entries are not jobs, see :func:`is_training_cache_entry`). A job whose
    summary is readable is in ``jobs`` even if its training did not complete; problems are:
    a summary that is missing, unreadable or of the wrong shape, a training that did not
    complete, and a probe result that is unreadable, of the wrong shape, not completed, or
    missing (the probe the job's Hydra config names, after a completed training).
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"no sweep folder at {sweep_dir}: pass the folder Hydra wrote (multirun/<name>)")
    jobs: list[Job] = []
    problems: list[Problem] = []
    for folder in _job_folders(sweep_dir):
        job, found = _scan_job(folder)
        hydra_cfg = _hydra_config(folder)
        if job is not None:
            opt, seed = job.optimizer, job.seed
            jobs.append(job)
        else:  # named from the job's Hydra config, when there is one
            node = hydra_cfg.get("optimizer")
            opt = str(node.get("name") or "") if isinstance(node, dict) else ""
            seed = hydra_cfg.get("seed") if isinstance(hydra_cfg.get("seed"), int) else None
        expected = _expected_probe(folder, hydra_cfg, job)
        if expected is not None:
            found.append(expected)
        name = str(folder.relative_to(sweep_dir))
        problems += [Problem(name, file, status, error, probe, opt, seed)
                     for file, status, error, probe in found]
    problems += _not_reproduced(jobs, sweep_dir)
    return Sweep(jobs, problems)


def _distinct(a: Any, b: Any) -> tuple[str, str]:
    """Two differing numbers with the fewest significant digits (from 6) that tell them apart."""
    if not all(isinstance(v, (int, float)) for v in (a, b)):
        return str(a), str(b)
    for digits in range(6, 18):
        sa, sb = f"{a:.{digits}g}", f"{b:.{digits}g}"
        if sa != sb:
            return sa, sb
    return repr(a), repr(b)


def _not_reproduced(jobs: list[Job], sweep_dir: Path) -> list[Problem]:
    """A problem for each job whose training (or pairwise probe's second model, from the
    record's ``others``) ended elsewhere than another job's with the same training key.

    The two folders' results then come from different weights (e.g. a study continued on a
    machine or torch version that did not reproduce the training), so pairing or averaging them
    would be silently inconsistent. The first folder (by path) is the reference; the listed
    folder's probe results still enter the tables (``--strict`` fails while it is listed).
    """
    first: dict[str, Job] = {}
    out = []

    def differ(job: Job, file: str, what: str, key: str, final: dict[str, Any]) -> None:
        ref = first[key]
        a = ref.summary["final"]
        if a != final:
            diff = next((k for k in sorted(a.keys() | final.keys()) if a.get(k) != final.get(k)), "")
            here, there = _distinct(final.get(diff), a.get(diff))
            out.append(Problem(
                str(job.path.relative_to(sweep_dir)), file, "not reproduced",
                f"{what} {key} ended at {diff} {here} here but {there} in "
                f"{ref.path.relative_to(sweep_dir)}: their results come from different weights "
                "(take both from one machine, or one train.store)", "train", job.optimizer, job.seed))

    for job in jobs:
        if (job.summary.get("status", "completed") != "completed" or "hash" not in job.summary
                or not job.summary.get("final")):
            continue
        first.setdefault(job.summary["hash"], job)
        differ(job, "train_summary.json", "training", job.summary["hash"], job.summary["final"])
    for job in jobs:  # a pairwise probe's second model, against that model's own jobs
        for name, rec in sorted(job.probes.items()):
            for other in rec.get("others") or []:
                if other.get("train_hash") in first and other.get("final"):
                    differ(job, f"probes/{name}.json", "second model's training", other["train_hash"],
                           other["final"])
    return out


def _scan_job(folder: Path) -> tuple[Job | None, list[tuple[str, str, str, str]]]:
    """The job in ``folder`` (None without a usable summary) and its problems as
    ``(file, status, error, probe)``."""
    found: list[tuple[str, str, str, str]] = []
    summary_path = folder / "train_summary.json"
    job = None
    if not summary_path.exists():
        found.append(("train_summary.json", "missing",
                      "no training summary: the job stopped before its training finished", "train"))
    else:
        try:
            job = Job(folder, _check_summary(_read(summary_path)))
        except _Unusable as e:
            found.append(("train_summary.json", e.status, e.error, "train"))
    if job is not None and (status := job.summary.get("status", "completed")) != "completed":
        found.append(("train_summary.json", status,
                      error_line(job.summary.get("error")) or f"training {status}", "train"))
    for p in sorted((folder / "probes").glob("*.json")):
        if p.name.endswith(".partial.json"):
            continue  # a running (or killed) probe's pieces; a missing result says so
        file = f"probes/{p.name}"
        try:
            rec = _check_record(_read(p))
        except _Unusable as e:
            found.append((file, e.status, e.error, p.stem))
            continue
        probe = rec.get("probe") or p.stem
        if rec["status"] != "completed":
            found.append((file, rec["status"], error_line(rec.get("error")) or f"probe {rec['status']}", probe))
        if job is not None:
            job.probes[probe] = rec
    return job, found


def _expected_probe(folder: Path, hydra_cfg: dict[str, Any], job: Job | None) -> tuple[str, str, str, str] | None:
    """The problem of a completed training whose configured probe left no result, or None."""
    node = hydra_cfg.get("probe")
    expected = node.get("name") if isinstance(node, dict) else None
    if (job is None or job.summary.get("status", "completed") != "completed"
            or not isinstance(expected, str) or expected == "none"
            or (folder / "probes" / f"{expected}.json").exists()):
        return None
    partial = (folder / "probes" / f"{expected}.partial.json").exists()
    return (f"probes/{expected}.json", "missing",
            "no result: the job stopped before its probe finished"
            + (" (pieces saved in the .partial.json)" if partial else ""), expected)


def load_sweep(sweep_dir: str | Path) -> list[Job]:
    """The usable jobs below ``sweep_dir`` (see :func:`scan_sweep`), sorted by path.

    Warns when some jobs or files could not be used; :func:`scan_sweep` lists them.
    """
    sweep = scan_sweep(sweep_dir)
    if sweep.problems:
        warnings.warn(f"{len(sweep.problems)} jobs or files in {sweep_dir} failed or could not be read: "
                      "losslands.report.load.scan_sweep lists them", stacklevel=2)
    return sweep.jobs


def trainings(jobs: list[Job]) -> list[dict[str, Any]]:
    """One training summary per training hash (jobs sharing a training are counted once)."""
    seen: dict[str, dict[str, Any]] = {}
    for j in jobs:
        seen.setdefault(j.summary.get("hash", str(j.path)), j.summary)
    return list(seen.values())


def probe_records(jobs: list[Job], probe: str, *, include_failed: bool = False) -> list[dict[str, Any]]:
    """Completed records of one probe, one per (training, probe config); with
    ``include_failed``, also the records that did not complete (one per job)."""
    seen: dict[str, dict[str, Any]] = {}
    for j in jobs:
        rec = j.probes.get(probe)
        if rec and rec.get("status") == "completed":
            seen.setdefault(rec.get("probe_key") or str(j.path), rec)
        elif rec and include_failed:
            seen.setdefault(str(j.path), rec)
    return list(seen.values())
