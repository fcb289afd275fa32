"""One job: train (or reuse) the configured model, then run the configured probe."""

from __future__ import annotations

import hashlib
import json
import logging
import time
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from losslands.config import with_overrides
from losslands.io import read_json, save_figure, write_json
from losslands.loggers import JobLoggers
from losslands.probes.base import SCHEMA, PartialResults, ProbeContext, load_probe
from losslands.training.cache import TrainingCache, training_config, training_hash
from losslands.training.fit import build_datamodule, train_or_reuse

log = logging.getLogger(__name__)


def probe_device(cfg: DictConfig) -> torch.device:
    """CUDA when the trainer may use it and it exists, else CPU."""
    acc = str(cfg.trainer.get("accelerator", "auto"))
    if acc in ("auto", "gpu", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    return torch.device("cpu")


def probe_key(train_key: str, probe_cfg: Mapping[str, Any]) -> str:
    """Identifies a probe result: the trained weights plus the resolved probe config."""
    blob = json.dumps({"train": train_key, "probe": probe_cfg}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one job; returns the probe result record (or the training summary for probe=none).

    Writes ``train_summary.json`` and ``probes/<probe>.json`` (+ ``.png``) in
    ``cfg.paths.output``. A probe result whose config hash matches is not recomputed.
    """
    if cfg.get("threads"):
        # parallel jobs on one CPU each defaulting to all cores slow each other down many-fold
        torch.set_num_threads(int(cfg.threads))
    out = Path(cfg.paths.output)
    out.mkdir(parents=True, exist_ok=True)
    probe_name = cfg.probe.name
    probe_cfg = OmegaConf.to_container(cfg.probe, resolve=True)
    tcfg = training_config(cfg)
    key = training_hash(tcfg)
    pkey = probe_key(key, probe_cfg)
    result_path = out / "probes" / f"{probe_name}.json"
    if probe_name != "none" and result_path.exists():
        old = read_json(result_path)
        if old.get("status") == "completed" and old.get("probe_key") == pkey:
            log.info("probe %s already done for this config: %s", probe_name, result_path)
            return old

    cache = TrainingCache(cfg.paths.cache)
    job_type = "probe" if cache.is_complete(key) and not cfg.train.get("force") else "train"
    loggers = JobLoggers(cfg, out, job_type)
    try:
        dm = build_datamodule(cfg)
        trained = train_or_reuse(cfg, datamodule=dm, loggers=loggers.lightning)
        write_json(out / "train_summary.json", trained.summary)
        loggers.log_scalars("final", {k.replace("/", "_"): v for k, v in trained.summary["final"].items()})
        if probe_name == "none":
            return trained.summary
        device = probe_device(cfg)
        dm.to(device)
        model = trained.model.to(device).float().eval()

        def load_other(overrides: Mapping[str, Any]) -> torch.nn.Module:
            other = train_or_reuse(with_overrides(cfg, overrides))
            return other.model.to(device).float().eval()

        ctx = ProbeContext(model=model, datamodule=dm, cfg=cfg, device=device, train_hash=key,
                           train_summary=trained.summary, load_other=load_other)
        return run_probe(probe_name, ctx, cfg.probe, out, loggers, pkey)
    finally:
        loggers.finish()


def run_probe(name: str, ctx: ProbeContext, probe_cfg: DictConfig, out: Path,
              loggers: JobLoggers | None = None, pkey: str = "") -> dict[str, Any]:
    """Run one probe and write its JSON (always, also on failure) and figure."""
    mod = load_probe(name)
    record: dict[str, Any] = {
        "probe": name, "schema": SCHEMA, "config": OmegaConf.to_container(probe_cfg, resolve=True),
        "train_hash": ctx.train_hash, "probe_key": pkey,
        "optimizer": ctx.cfg.optimizer.name, "seed": int(ctx.cfg.seed), "model": ctx.cfg.model.name,
    }
    path = out / "probes" / f"{name}.json"
    # without a probe key, saved pieces could not be matched to this config: keep them in memory
    ctx.partial = PartialResults(path.with_suffix(".partial.json") if pkey else None, pkey)
    start = time.perf_counter()
    try:
        result = mod.run(ctx, probe_cfg)
    except Exception:
        record.update(status="failed", seconds=time.perf_counter() - start, error=traceback.format_exc())
        write_json(path, record)
        raise
    record.update(status="completed", seconds=time.perf_counter() - start, result=result)
    scalars = mod.scalars(result) if hasattr(mod, "scalars") else {}
    record["scalars"] = scalars
    write_json(path, record)
    ctx.partial.clear()
    if hasattr(mod, "plot"):
        fig = mod.plot(result)
        if fig is not None:
            png = save_figure(path.with_suffix(".png"), fig)
            if loggers is not None:
                loggers.log_figure(f"{name}/figure", png)
    if loggers is not None:
        loggers.log_scalars(name, scalars)
        if hasattr(mod, "tables"):
            for tname, (cols, rows) in mod.tables(result).items():
                loggers.log_table(f"{name}/{tname}", cols, rows)
        if hasattr(mod, "lines"):
            for lname, (xname, series) in mod.lines(result).items():
                loggers.log_lines(f"{name}/{lname}_plot", xname, series)
    return record
