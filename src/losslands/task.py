"""One job: train (or reuse) the configured model, then run the configured probe.

The entry layer: it reads the Hydra config and hands the probe a
:class:`~losslands.probes.base.ProbeContext` of named fields, never the config itself.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from losslands.allocator import reuse_freed_memory
from losslands.config import coupled_weight_decay, validate_job_config, with_overrides
from losslands.io import read_json, write_json
from losslands.loggers import JobLoggers
from losslands.probes.base import PieceStore, ProbeConfig, ProbeContext, make_config
from losslands.probes.runner import run_probe
from losslands.training.cache import TrainingCache, init_hash, training_config, training_hash
from losslands.training.fit import (
    build_datamodule,
    build_model,
    build_optimizer,
    ddp_participant,
    model_name,
    train_or_reuse,
)

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


def probe_config(cfg: DictConfig) -> ProbeConfig | None:
    """The job's typed probe config (range-checked), or None for ``probe=none``."""
    name = cfg.probe.name
    if name == "none":
        return None
    options = OmegaConf.to_container(cfg.probe, resolve=True)
    return make_config(name, options)


def probe_context(cfg: DictConfig, model: torch.nn.Module, datamodule: Any, device: torch.device,
                  train_key: str, summary: Mapping[str, Any]) -> ProbeContext:
    """The :class:`ProbeContext` a job's config describes, for its trained ``model``."""

    others: list[dict[str, Any]] = []

    def load_other(overrides: Mapping[str, Any]) -> torch.nn.Module:
        other = train_or_reuse(with_overrides(cfg, overrides))
        others.append({"train_hash": other.key, "final": dict(other.summary.get("final") or {})})
        return other.model.to(device).float().eval()

    return ProbeContext(
        model=model,
        data=datamodule.splits,
        device=device,
        batch_size=int(cfg.data.batch_size),
        eval_batch_size=int(cfg.data.eval_batch_size),
        augment=bool(cfg.data.augment),
        optimizer_name=str(cfg.optimizer.name),
        coupled_weight_decay=coupled_weight_decay(cfg.optimizer),
        seed=int(cfg.seed),
        epochs=int(cfg.trainer.max_epochs),
        model_name=model_name(cfg),
        make_model=lambda: build_model(cfg),
        make_optimizer=build_optimizer(cfg),
        load_other=load_other,
        train_key=train_key,
        init_key=init_hash(cfg),
        train_summary=summary,
        # one store for every training: a piece that does not depend on the trained weights
        # (intrinsic_dim's subspace trainings) serves every optimizer's job at a seed
        store=PieceStore(Path(cfg.dirs.cache) / "pieces") if train_key else None,
        others=others,
    )


def configure_process(cfg: DictConfig) -> None:
    """Apply the job's process-wide settings: torch's CPU threads and ``malloc_reuse``."""
    if cfg.get("threads"):
        # parallel jobs on one CPU each defaulting to all cores slow each other down many-fold
        torch.set_num_threads(int(cfg.threads))
    if cfg.get("malloc_reuse"):
        reuse_freed_memory()


def run(cfg: DictConfig) -> dict[str, Any]:
    """Run one job; returns the probe result record (or the training summary for probe=none).

    Writes ``train_summary.json`` and ``probes/<probe>.json`` (+ ``.png``) in
    ``cfg.dirs.output``. A probe result whose config hash matches is not recomputed. The
    config (job and probe) is checked before any data is loaded.
    """
    validate_job_config(cfg)
    pcfg = probe_config(cfg)
    configure_process(cfg)
    if ddp_participant():
        # a rank > 0 of Lightning's DDP training, started by rank 0's fit: train, write nothing
        train_or_reuse(cfg)
        return {}
    out = Path(cfg.dirs.output)
    out.mkdir(parents=True, exist_ok=True)
    probe_name = cfg.probe.name
    tcfg = training_config(cfg)
    key = training_hash(tcfg)
    pkey = probe_key(key, pcfg.to_dict()) if pcfg is not None else ""
    result_path = out / "probes" / f"{probe_name}.json"
    if pcfg is not None and result_path.exists():
        old = read_json(result_path)
        if old.get("status") == "completed" and old.get("probe_key") == pkey:
            log.info("probe %s already done for this config: %s", probe_name, result_path)
            return old

    cache = TrainingCache(cfg.dirs.cache)
    reused = cache.is_complete(key) and not cfg.train.get("force")
    job_type = "probe" if cfg.get("weights") or reused else "train"
    loggers = JobLoggers(cfg, out, job_type)
    try:
        dm = build_datamodule(cfg)
        trained = train_or_reuse(cfg, datamodule=dm, loggers=loggers.lightning)
        write_json(out / "train_summary.json", trained.summary)
        loggers.log_scalars("final", {k.replace("/", "_"): v for k, v in trained.summary["final"].items()})
        if pcfg is None:
            return trained.summary
        device = probe_device(cfg)
        dm.to(device)
        model = trained.model.to(device).float().eval()
        ctx = probe_context(cfg, model, dm, device, key, trained.summary)
        return run_probe(probe_name, ctx, pcfg, out, loggers, pkey)
    finally:
        loggers.finish()
