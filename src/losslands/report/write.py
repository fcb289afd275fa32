"""Write REPORT.md, results.csv and figures for a sweep folder."""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

from losslands.io import _atomic, save_figure
from losslands.report import figures
from losslands.report.definitions import DEFINITIONS
from losslands.report.load import Job, load_sweep, probe_records, trainings
from losslands.report.tables import epochs_to_fraction, group_scalars, markdown_table, mean_std

OPTIMIZER_ORDER = ["sgd", "momentum", "adamw", "adam"]

# (title, probe, metrics): one table per probe, rows = optimizers.
PROBE_TABLES = [
    ("Evaluation on the full splits", "eval", ["train_acc", "test_acc", "train_loss", "test_loss", "generalization_gap"]),
    ("Hessian spectrum", "lanczos", ["lambda_max", "lambda_min", "abs_min_over_max", "lambda_max_over_min", "trace", "negative_mass", "negative_mass_smoothed"]),
    ("Gradient noise vs curvature", "noise", ["lambda_c", "lambda_h", "ratio", "alignment", "trace_c", "lambda_c_over_b"]),
    ("Loss along the top eigenvector", "perturbation", ["lambda_top", "fd_curvature_small", "fd_curvature_large", "loss_range", "random_curvature_small"]),
    ("Intrinsic dimension", "intrinsic_dim", ["d_int90", "d_int90_interp", "reached_90", "d_max", "full_acc"]),
    ("Loss surface", "surface", ["loss_center", "loss_min", "loss_max", "sharpness_ratio"]),
]
PATH_PROBES = [("linear", "interpolation"), ("AutoNEB", "autoneb"), ("Bézier", "curve")]


def _natural(key: str) -> tuple:
    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", key))


def results_rows(jobs: list[Job]) -> list[dict[str, Any]]:
    """One row per (job, probe, metric): the long format behind every table."""
    rows = []
    for j in jobs:
        base = {"job": j.path.name, "optimizer": j.optimizer, "seed": j.seed, "train_hash": j.summary.get("hash")}
        for k, v in (j.summary.get("final") or {}).items():
            rows.append({**base, "probe": "train", "pair": "", "metric": k, "value": v})
        for name, rec in j.probes.items():
            if rec.get("status") != "completed":
                rows.append({**base, "probe": name, "pair": _pair(rec), "metric": "status", "value": rec.get("status")})
                continue
            for k, v in (rec.get("scalars") or {}).items():
                rows.append({**base, "probe": name, "pair": _pair(rec), "metric": k, "value": v})
            rows.append({**base, "probe": name, "pair": _pair(rec), "metric": "seconds", "value": rec.get("seconds")})
    return rows


def _pair(rec: dict[str, Any]) -> str:
    res = rec.get("result") or {}
    if res.get("pair"):
        return res["pair"]
    return f"{rec.get('optimizer')}-{res['other']}" if res.get("other") else ""


def training_table(jobs: list[Job]) -> tuple[str, dict]:
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for s in trainings(jobs):
        if s.get("status") != "completed":
            continue
        g = groups[s["config"]["optimizer"]["name"]]
        for k in ("train/acc", "val/acc", "train/loss", "val/loss"):
            if k in s.get("final", {}):
                g[k].append(s["final"][k])
        e90 = epochs_to_fraction(s.get("history", []))
        if e90 is not None:
            g["epochs_to_90pct_val_acc"].append(e90)
        g["train_seconds"].append(s.get("train_seconds", float("nan")))
    metrics = ["train/acc", "val/acc", "train/loss", "val/loss", "epochs_to_90pct_val_acc", "train_seconds"]
    return markdown_table(groups, metrics, order=OPTIMIZER_ORDER), groups


def paths_table(jobs: list[Job]) -> tuple[str, dict]:
    groups: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for label, probe in PATH_PROBES:
        for rec in probe_records(jobs, probe):
            s = rec.get("scalars") or {}
            if "barrier" in s:
                groups[_pair(rec) or rec.get("optimizer", "?")][f"{label} barrier"].append(s["barrier"])
    return markdown_table(groups, [f"{label} barrier" for label, _ in PATH_PROBES], label="pair"), groups


def write_report(sweep_dir: str | Path, *, wandb: bool = False, wandb_mode: str | None = None) -> Path:
    """Write ``REPORT.md``, ``results.csv`` and ``figures/`` into ``sweep_dir``; return the report path."""
    sweep_dir = Path(sweep_dir)
    jobs = load_sweep(sweep_dir)
    if not jobs:
        raise FileNotFoundError(f"no jobs with train_summary.json below {sweep_dir}: run the sweep first")
    rows = results_rows(jobs)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=["job", "optimizer", "seed", "probe", "pair", "metric", "value", "train_hash"])
    writer.writeheader()
    writer.writerows(rows)
    _atomic(sweep_dir / "results.csv", lambda tmp: Path(tmp).write_text(buf.getvalue()))

    seeds = sorted({j.seed for j in jobs})
    opts = sorted({j.optimizer for j in jobs}, key=lambda o: (OPTIMIZER_ORDER + [o]).index(o))
    failed = [(j.path.name, n) for j in jobs for n, r in j.probes.items() if r.get("status") != "completed"]
    md = [f"# losslands report: {sweep_dir.name}\n",
          f"{len(jobs)} jobs, optimizers {', '.join(opts)}, seeds {seeds}. Cells: mean ± std over seeds (n).\n"]
    if failed:
        md.append(f"**{len(failed)} probe runs did not complete**: " + ", ".join(f"{a}/{b}" for a, b in failed) + "\n")

    tables: dict[str, dict] = {}
    text, tables["training"] = training_table(jobs)
    md += ["## Training\n", text]
    for title, probe, metrics in PROBE_TABLES:
        recs = probe_records(jobs, probe)
        if not recs:
            continue
        groups = group_scalars(recs)
        extra = sorted({k for g in groups.values() for k in g if k.startswith(("acc_d", "ratio_n"))}, key=_natural)
        tables[probe] = groups
        md += [f"## {title} (`probe={probe}`)\n", markdown_table(groups, [*metrics, *extra], order=OPTIMIZER_ORDER)]
    text, tables["paths"] = paths_table(jobs)
    if tables["paths"]:
        md += ["## Paths between solutions (barriers per optimizer pair)\n", text]

    fig_dir = sweep_dir / "figures"
    images = []
    for name, fig in figures.all_figures(jobs):
        path = save_figure(fig_dir / f"{name}.png", fig)
        images.append(path)
        md.append(f"![{name}](figures/{path.name})\n")
    md.append(DEFINITIONS)
    report = sweep_dir / "REPORT.md"
    _atomic(report, lambda tmp: Path(tmp).write_text("\n".join(md)))
    if wandb:
        _log_to_wandb(sweep_dir, tables, images, wandb_mode)
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
