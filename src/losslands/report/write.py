"""Write REPORT.md, results.csv and figures for a sweep folder."""

from __future__ import annotations

import csv
import io
import re
import warnings
from collections import defaultdict
from pathlib import Path
from typing import Any

from losslands.io import save_figure, write_text
from losslands.probes.base import available_probes, load_probe
from losslands.report import figures
from losslands.report.definitions import definitions
from losslands.report.findings import findings_section, is_cross_seed
from losslands.report.load import (
    OPTIMIZER_ORDER,
    Job,
    Problem,
    canonical_pair,
    probe_records,
    scan_sweep,
    trainings,
)
from losslands.report.tables import (
    epochs_to_fraction,
    group_scalars,
    markdown_table,
    mean_std,
    scalar_value,
)


def probe_sections() -> list[tuple[str, str, list[str], list[str]]]:
    """``(title, probe, table scalars, scalar-family prefixes)`` of every probe with a table, in
    report order, read from each probe's ``INFO`` (a new probe needs no edit here)."""
    infos = [(name, load_probe(name).INFO) for name in available_probes()]
    return [
        (info.title, name, list(info.table), list(info.table_prefixes))
        for name, info in sorted(infos, key=lambda t: (t[1].order, t[0]))
        if info.table
    ]


def probe_nulls(probe: str) -> dict[str, str]:
    """``{scalar: what its null value means}`` of a probe, for :func:`markdown_table`."""
    return {k: v.null for k, v in load_probe(probe).INFO.scalars.items()}


def path_probes() -> list[tuple[str, str]]:
    """``(label, probe)`` of the pairwise probes, whose ``barrier`` forms the paths table."""
    infos = [(name, load_probe(name).INFO) for name in available_probes()]
    return [(info.title, name) for name, info in sorted(infos, key=lambda t: (t[1].order, t[0]))
            if info.pairwise]


def _natural(key: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key))


RESULTS_COLUMNS = ["job", "optimizer", "seed", "probe", "pair", "metric", "value", "train_hash", "status", "error"]


def results_rows(jobs: list[Job], problems: list[Problem] = ()) -> list[dict[str, Any]]:
    """One row per (job, probe, metric): the long format behind every table.

    ``status`` is the training's or the probe's; every problem (see
    :func:`~losslands.report.load.scan_sweep`) adds a row with its status and, in ``error``,
    the file and the first line of its error.
    """
    rows = []
    for j in jobs:
        base = {"job": j.path.name, "optimizer": j.optimizer, "seed": j.seed, "train_hash": j.summary.get("hash")}
        status = j.summary.get("status", "completed")
        for k, v in (j.summary.get("final") or {}).items():
            rows.append({**base, "probe": "train", "pair": "", "metric": k, "value": v, "status": status})
        for name, rec in j.probes.items():
            if rec.get("status") != "completed":
                continue  # its row, with the error, comes from the problems
            for k, v in (rec.get("scalars") or {}).items():
                rows.append({**base, "probe": name, "pair": _pair(rec), "metric": k, "value": v, "status": "completed"})
            rows.append({**base, "probe": name, "pair": _pair(rec), "metric": "seconds", "value": rec.get("seconds"),
                         "status": "completed"})
    for p in problems:
        rows.append({"job": p.job, "optimizer": p.optimizer, "seed": p.seed, "probe": p.probe, "pair": "",
                     "metric": "", "value": "", "train_hash": "", "status": p.status, "error": f"{p.file}: {p.error}"})
    return rows


class IncompleteSweep(RuntimeError):
    """Raised by ``write_report(strict=True)`` after writing, when jobs or files are missing."""


def problems_section(problems: list[Problem]) -> str:
    """The "Failed or unreadable" section of REPORT.md: one row per job or file without a result."""
    lines = ["## Failed or unreadable\n",
             "These jobs and files gave no result to the tables and figures, except those `not reproduced`: "
             "their results are in the tables, from other weights than another folder's of the same "
             "training (`python -m losslands.report --strict` exits non-zero while any are listed).\n",
             "| job | file | status | error |", "|---|---|---|---|"]
    for p in problems:
        cells = (p.job, p.file, p.status, p.error)
        lines.append("| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ")[:300] for c in cells) + " |")
    return "\n".join(lines) + "\n"


def _pair(rec: dict[str, Any]) -> str:
    """``a-b`` for a pairwise record, in the report's optimizer order (the findings' labels)."""
    res = rec.get("result") or {}
    label = res.get("pair") or (f"{rec.get('optimizer')}-{res['other']}" if res.get("other") else "")
    return canonical_pair(label)[0]  # adamw-sgd and sgd-adamw are one pair


def _seeds_and_optimizers(jobs: list[Job]) -> tuple[list[int], list[str]]:
    """The sweep's seeds, sorted, and optimizers, in the report's order."""
    opts = sorted({j.optimizer for j in jobs}, key=lambda o: (OPTIMIZER_ORDER + [o]).index(o))
    return sorted({j.seed for j in jobs}), opts


def _coverage_row(probe: str, rec: dict[str, Any]) -> str:
    """A record's coverage row: the probe, or its cross-seed baseline."""
    return f"{probe} (cross-seed)" if is_cross_seed(rec) else probe


def coverage_table(jobs: list[Job], stale: frozenset[Path] = frozenset()) -> str:
    """Per probe and optimizer, how many of the sweep's seeds have a completed result, and which
    are missing: what a partial sweep still lacks. Pairwise probes between two seeds of one
    optimizer (the cross-seed baseline) get their own rows. A result only from a job folder in
    ``stale`` (``not reproduced``: other weights than the sweep's) counts, is named, and is priced
    as a job still to run."""
    seeds, opts = _seeds_and_optimizers(jobs)
    have: dict[str, dict[str, set[int]]] = {"training": defaultdict(set)}
    seconds: dict[str, list[float]] = defaultdict(list)  # wall time of each finished job, per row
    for s in trainings(jobs):
        if s.get("status", "completed") == "completed":
            have["training"][s["config"]["optimizer"]["name"]].add(int(s["config"].get("seed", 0)))
            if isinstance(s.get("train_seconds"), int | float):
                seconds["training"].append(float(s["train_seconds"]))
    for probe in available_probes():
        for rec in probe_records(jobs, probe):
            row = _coverage_row(probe, rec)
            have.setdefault(row, defaultdict(set))[rec.get("optimizer", "?")].add(int(rec.get("seed", 0)))
            if isinstance(rec.get("seconds"), int | float):
                seconds[row].append(float(rec["seconds"]))
    cells_of = defaultdict(set)  # {(row, optimizer, seed): whether each folder holding it is stale}
    for j in jobs:
        for probe, rec in j.probes.items():
            if rec.get("status") == "completed":
                cells_of[(_coverage_row(probe, rec), rec.get("optimizer", "?"), int(rec.get("seed", 0)))].add(j.path in stale)
    redo = {cell for cell, flags in cells_of.items() if flags == {True}}
    lines = ["| | " + " | ".join(opts) + " |", "|---|" + "---|" * len(opts)]
    to_run: dict[str, int] = {}
    for row, by_opt in have.items():
        cells = []
        for o in opts:
            missing = [str(s) for s in seeds if s not in by_opt.get(o, set())]
            again = [str(s) for s in seeds if (row, o, s) in redo]
            notes = ([f"no seed {', '.join(missing)}"] if missing else []) + (
                [f"seed {', '.join(again)} not reproduced"] if again else [])
            cells.append(f"{len(seeds) - len(missing)}/{len(seeds)}" + (f" ({'; '.join(notes)})" if notes else ""))
            if missing or again:
                to_run[row] = to_run.get(row, 0) + len(missing) + len(again)
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n" + _to_finish(to_run, seconds)


def _to_finish(to_run: dict[str, int], seconds: dict[str, list[float]]) -> str:
    """What the missing cells would cost at this sweep's mean wall time per finished job."""
    if not to_run:
        return ""
    known = {row: n * sum(seconds[row]) / len(seconds[row]) for row, n in to_run.items() if seconds.get(row)}
    parts = [f"{row} {n} x {sum(seconds[row]) / len(seconds[row]) / 60:.1f} min" if row in known
             else f"{row} {n} x unknown" for row, n in to_run.items()]
    total = sum(known.values())
    when = f"{total / 3600:.1f} h" if total >= 3600 else f"{total / 60:.0f} min"
    unknown = " plus the jobs of unknown cost" if len(known) < len(to_run) else ""
    return (f"\nTo finish: {sum(to_run.values())} jobs, about {when}{unknown} on these machines at "
            f"the mean wall time of the finished jobs of each row ({'; '.join(parts)}).\n")


def cost_table(jobs: list[Job]) -> str:
    """Wall time per probe (sum over jobs and per job) and per training, and the machines."""
    rows, machines = [], {}
    train = [s.get("train_seconds") for s in trainings(jobs) if s.get("status", "completed") == "completed"]
    train = [float(t) for t in train if isinstance(t, int | float)]
    if train:
        rows.append(("training", len(train), sum(train)))
    for probe in available_probes():
        recs = probe_records(jobs, probe)
        secs = [float(r["seconds"]) for r in recs if isinstance(r.get("seconds"), int | float)]
        for r in recs:
            m = r.get("machine") or {}
            if m:
                machines[(m.get("processor"), m.get("threads"), m.get("gpu"), m.get("torch"))] = m
        if secs:
            rows.append((probe, len(secs), sum(secs)))
    lines = ["| work | jobs | wall time, total | per job |", "|---|---|---|---|"]
    lines += [f"| {name} | {n} | {total / 60:.1f} min | {total / n / 60:.1f} min |" for name, n, total in rows]
    if rows:
        lines.append(f"| all | | {sum(t for *_, t in rows) / 3600:.2f} h | |")
    text = "\n".join(lines) + "\n"
    if rows:
        text += ("\nEvery model's training is in the training row; a probe's row excludes loading "
                 "or training a pairwise probe's second model (`other_seconds` in its JSON).\n")
    if machines:
        text += "\nMachines: " + "; ".join(
            f"{m.get('processor')} ({m.get('cpus')} CPUs, {m.get('threads')} threads"
            + (f", {m['gpu']}" if m.get("gpu") else "") + f"), {m.get('platform')}, torch {m.get('torch')}"
            for m in machines.values()) + "\n"
    return text


def training_table(jobs: list[Job]) -> tuple[str, dict]:
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in trainings(jobs):
        g = groups[s["config"]["optimizer"]["name"]]
        # a training that did not complete counts as a missing value of every metric
        done = s.get("status", "completed") == "completed"
        final = (s.get("final") or {}) if done else {}
        for k in ("train/acc", "val/acc", "train/loss", "val/loss"):
            g[k].append(scalar_value(final, k))
        g["epochs_to_90pct_val_acc"].append(epochs_to_fraction(s.get("history") or []) if done else None)
        g["train_seconds"].append(scalar_value(s, "train_seconds") if done else None)
    metrics = ["train/acc", "val/acc", "train/loss", "val/loss", "epochs_to_90pct_val_acc", "train_seconds"]
    return markdown_table(groups, metrics, order=OPTIMIZER_ORDER), groups


def paths_table(jobs: list[Job]) -> tuple[str, dict]:
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    paths = path_probes()
    for label, probe in paths:
        for rec in probe_records(jobs, probe):
            s = rec.get("scalars") or {}
            groups[_pair(rec) or rec.get("optimizer", "?")][f"{label} barrier"].append(scalar_value(s, "barrier"))
    return markdown_table(groups, [f"{label} barrier" for label, _ in paths], label="pair"), groups


def write_report(sweep_dir: str | Path, *, wandb: bool = False, wandb_mode: str | None = None,
                 strict: bool = False) -> Path:
    """Write ``REPORT.md``, ``results.csv`` and ``figures/`` into ``sweep_dir``; return the report path.

    Jobs and files without a usable result are listed in the report's "Failed or unreadable"
    section and in ``results.csv``, with a warning.

    Raises:
        IncompleteSweep: with ``strict``, after writing everything, when any are listed.
    """
    sweep_dir = Path(sweep_dir)
    sweep = scan_sweep(sweep_dir)
    jobs, problems = sweep.jobs, sweep.problems
    if not jobs and not problems:
        raise FileNotFoundError(f"no jobs with train_summary.json below {sweep_dir}: run the sweep first")
    rows = results_rows(jobs, problems)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=RESULTS_COLUMNS)
    writer.writeheader()
    writer.writerows(rows)
    write_text(sweep_dir / "results.csv", buf.getvalue())

    seeds, opts = _seeds_and_optimizers(jobs)
    md = [f"# losslands report: {sweep_dir.name}\n",
          f"{len(jobs)} jobs, optimizers {', '.join(opts)}, seeds {seeds}. Cells: mean ± std over seeds (n).\n"]
    if problems:
        md += [f"**{len(problems)} jobs or files failed or could not be read** (listed below).\n",
               problems_section(problems)]

    md.append(findings_section(jobs))
    md += ["## Coverage\n", f"Completed results per optimizer, of the sweep's seeds {seeds}.\n",
           coverage_table(jobs, frozenset(sweep_dir / p.job for p in problems if p.status == "not reproduced"))]
    tables: dict[str, dict] = {}
    text, tables["training"] = training_table(jobs)
    md += ["## Training\n", text]
    for title, probe, metrics, prefixes in probe_sections():
        recs = probe_records(jobs, probe, include_failed=True)  # failed seeds count as missing
        if not recs:
            continue
        groups = group_scalars(recs)
        extra = sorted({k for g in groups.values() for k in g if prefixes and k.startswith(tuple(prefixes))}, key=_natural)
        tables[probe] = groups
        md += [f"## {title} (`probe={probe}`)\n",
               markdown_table(groups, [*metrics, *extra], order=OPTIMIZER_ORDER, nulls=probe_nulls(probe))]
    text, tables["paths"] = paths_table(jobs)
    if tables["paths"]:
        md += ["## Paths between solutions (barriers per optimizer pair)\n", text]

    md += ["## Cost\n", cost_table(jobs)]
    fig_dir = sweep_dir / "figures"
    images = []
    for name, fig in figures.all_figures(jobs):
        path = save_figure(fig_dir / f"{name}.png", fig)
        images.append(path)
        md.append(f"![{name}](figures/{path.name})\n")
    md.append(definitions())
    report = sweep_dir / "REPORT.md"
    write_text(report, "\n".join(md))
    if wandb:
        _log_to_wandb(sweep_dir, tables, images, wandb_mode)
    if problems:
        message = f"{len(problems)} jobs or files failed or could not be read: listed in {report}"
        if strict:
            raise IncompleteSweep(message)
        warnings.warn(message, stacklevel=2)
    return report


def _log_to_wandb(sweep_dir: Path, tables: dict[str, dict], images: list[Path], mode: str | None) -> None:
    """Log the report as a W&B job of type ``report``: one table per section, figures as images."""
    import os

    import wandb

    run = wandb.init(project="losslands", job_type="report", name=f"report-{sweep_dir.name}",
                     tags=[sweep_dir.name], dir=str(sweep_dir),
                     mode=mode or os.environ.get("WANDB_MODE") or "offline")
    for section, groups in tables.items():
        metrics = sorted({m for g in groups.values() for m in g})
        data = [[g, m, *mean_std(groups[g].get(m, []))] for g in groups for m in metrics]
        run.log({f"report/{section}": wandb.Table(columns=["group", "metric", "mean", "std", "n"], data=data)})
        for g in groups:
            for m in metrics:
                mean, _, n = mean_std(groups[g].get(m, []))
                if n:
                    run.summary[f"{section}/{g}/{m}"] = mean
    for p in images:
        run.log({f"figures/{p.stem}": wandb.Image(str(p))})
    run.finish()
