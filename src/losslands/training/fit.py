"""Train a configured model, or reuse it from the training cache."""

from __future__ import annotations

import logging
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from omegaconf import DictConfig, OmegaConf
from torch import nn

from losslands import __version__
from losslands.config import validate_job_config
from losslands.flat import num_params
from losslands.io import save_torch, write_json
from losslands.training.cache import TrainingCache, set_aside, training_config, training_hash
from losslands.training.module import Classifier, DivergenceError
from losslands.training.weights import describe_model, load_weights

log = logging.getLogger(__name__)


def _without_name(node: DictConfig) -> DictConfig:
    """A config node minus its ``name`` label, ready for ``hydra.utils.instantiate``."""
    d = OmegaConf.to_container(node, resolve=True)
    d.pop("name", None)
    return OmegaConf.create(d)


def build_model(cfg: DictConfig) -> nn.Module:
    """The model, initialised deterministically from ``cfg.seed``."""
    L.seed_everything(int(cfg.seed), workers=False, verbose=False)
    return instantiate(_without_name(cfg.model))


def model_name(cfg: DictConfig) -> str:
    """``model.name``, or, for a model given by ``model._target_`` alone, its class name."""
    name = cfg.model.get("name")
    return str(name) if name else str(cfg.model.get("_target_") or "model").rsplit(".", 1)[-1]


def num_classes(cfg: DictConfig) -> int:
    """The number of classes: ``data.num_classes``, else ``model.num_classes``, else 10."""
    for node in (cfg.data, cfg.model):
        if node.get("num_classes") is not None:
            return int(node.num_classes)
    return 10


def build_optimizer(cfg: DictConfig):
    """A factory ``params -> optimizer`` carrying every configured hyper-parameter."""
    return instantiate(_without_name(cfg.optimizer))


def build_datamodule(cfg: DictConfig):
    """The job's datamodule, loaded; the job config is validated first (no data read for a
    config that could not train)."""
    validate_job_config(cfg)
    dm = instantiate(_without_name(cfg.data))
    dm.prepare_data()
    dm.setup()
    return dm


def build_callbacks(cfg: DictConfig) -> list[Callback]:
    """Extra training callbacks from the ``callbacks`` group (each a ``_target_`` node)."""
    nodes = cfg.get("callbacks") or {}
    return [instantiate(node) for node in nodes.values() if node is not None]


@dataclass
class Trained:
    """A trained model and where it came from."""

    model: nn.Module
    summary: dict[str, Any]
    key: str
    path: Path
    trained_now: bool


class _DataToDevice(Callback):
    """Moves the device-resident data tensors to the device Lightning chose."""

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.datamodule.to(pl_module.device)


class _ReplayHistory(Callback):
    """Logs the epochs a resumed run restored from its checkpoint, as Lightning logged them
    (a validation row, then a training row with any curvature values, per epoch), so the job's
    loggers hold the whole training history and not only the epochs after the resume."""

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        history = list(getattr(pl_module, "history", []))
        if not history or not trainer.loggers:
            return
        curvature = {h.get("epoch"): h for h in getattr(pl_module, "probe_history", None) or []}
        # batches per epoch, from the restored step counter (the step Lightning logs at an
        # epoch's end is the last batch's)
        stepped = getattr(trainer.fit_loop.epoch_loop, "_batches_that_stepped", trainer.global_step)
        per_epoch = stepped // len(history)
        for h in history:
            epoch = int(h["epoch"])
            step = epoch * per_epoch - 1
            val = {k: v for k, v in h.items() if k.startswith("val/")}
            train = {k: v for k, v in h.items() if k.startswith("train/")}
            train.update({f"curvature/{k}": v for k, v in curvature.get(epoch, {}).items()
                          if k in ("lambda_max", "trace", "noise_ratio")})
            for logger in trainer.loggers:
                for row in (val, train):
                    if row:
                        logger.log_metrics({**_as_logged(row), "epoch": epoch - 1}, step=step)
        for logger in trainer.loggers:
            logger.save()


def _as_logged(row: dict[str, Any]) -> dict[str, Any]:
    """Values as ``LightningModule.log`` records them: tensors of the default float dtype."""
    return {k: float(torch.tensor(v, dtype=torch.get_default_dtype())) for k, v in row.items()
            if isinstance(v, (int, float))}


def _load(cfg: DictConfig, cache: TrainingCache, key: str, *, set_aside_unreadable: bool) -> Trained | None:
    """The cached model, or None when its ``model.pt`` cannot be loaded into the model.

    With ``set_aside_unreadable`` (only under the cache lock, where no job rewrites it), such a
    file is moved aside and logged; the caller then retrains, which is deterministic.
    """
    model = build_model(cfg)
    path = cache.path(key) / "model.pt"
    try:
        model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    except Exception as e:  # truncated, garbage, or not this model's state dict
        if set_aside_unreadable:
            set_aside(path, e)
        return None
    return Trained(model, cache.summary(key), key, cache.path(key), trained_now=False)


def _readable_checkpoint(path: Path) -> bool:
    """Whether Lightning can resume from ``path``; an unreadable one is set aside."""
    try:
        # what Lightning's resume does (torch's default weights_only=True), so failures show
        # here with the file named instead of inside trainer.fit
        torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        set_aside(path, e)
        return False
    return True


def train_or_reuse(cfg: DictConfig, *, datamodule=None, loggers=(), force: bool | None = None) -> Trained:
    """Return the trained model for ``cfg``, training it only if the cache lacks it.

    A run killed mid-training resumes from ``<cache>/<hash>/last.ckpt``; the data order is a
    function of (seed, epoch), so the resumed run ends with the same weights, and its loggers
    get the epochs before the resume too. An unreadable cached ``model.pt`` or ``last.ckpt``
    is renamed to ``*.corrupt`` (logged) and recomputed.

    Raises:
        InvalidConfig: a config value no training could use (checked before anything else).
        DivergenceError: the loss became NaN or infinite (``status: diverged`` is recorded).
    """
    validate_job_config(cfg)
    force = bool(cfg.train.get("force", False)) if force is None else force
    tcfg = training_config(cfg)
    key = training_hash(tcfg)
    if cfg.get("weights"):
        return _external(cfg, tcfg, key)
    cache = TrainingCache(cfg.dirs.cache)
    if ddp_participant():
        # rank 0 holds the cache lock and started this process from inside its own fit:
        # train alongside it and leave the cache to it (taking the lock here would deadlock)
        return _train(cfg, cache, key, tcfg, datamodule, loggers, force=False, write=False)
    store = TrainingCache(cfg.train.store) if cfg.train.get("store") else None
    if not force and cache.is_complete(key):
        trained = _load(cfg, cache, key, set_aside_unreadable=False)
        if trained is not None:
            return _shelved(trained, cache, store)
    with cache.lock(key):
        if not force and cache.is_complete(key):  # trained by a concurrent job meanwhile
            trained = _load(cfg, cache, key, set_aside_unreadable=True)
            if trained is not None:
                return _shelved(trained, cache, store)
        if not force and store is not None and store.is_complete(key):
            # the weights the published results were measured on: a retraining reproduces them
            # only on the same CPU type and torch version
            store.copy_entry(key, cache)
            log.info("training %s taken from the store %s", key, store.root)
            trained = _load(cfg, cache, key, set_aside_unreadable=True)
            if trained is not None:
                return trained
        return _shelved(_train(cfg, cache, key, tcfg, datamodule, loggers, force), cache, store)


def _shelved(trained: Trained, cache: TrainingCache, store: TrainingCache | None) -> Trained:
    """``trained``, after copying its cache entry into ``store`` if the store lacks it."""
    if store is not None and not store.is_complete(trained.key):
        cache.copy_entry(trained.key, store)
        log.info("training %s stored in %s", trained.key, store.root)
    return trained


def _external(cfg: DictConfig, tcfg: dict, key: str) -> Trained:
    """``weights=PATH``: the configured model with the file's weights, nothing trained or cached
    (the file is the cache entry); its summary says where the weights came from."""
    model = build_model(cfg)
    expected = describe_model(OmegaConf.to_container(cfg.model, resolve=True))
    info = load_weights(model, str(cfg.weights), trust=bool(cfg.get("weights_trust", False)),
                        expected_model=expected)
    summary = {
        "status": "completed", "source": "external", "hash": key, "config": tcfg,
        "weights": {"path": info.path, "sha256": info.sha256, "entry": info.entry,
                    "prefix_stripped": info.prefix, "left_out": info.ignored, **info.counters},
        "n_params": num_params(model), "losslands": __version__,
        "final": {}, "history": [], "probe_history": [],
    }
    return Trained(model, summary, key, Path(info.path), trained_now=False)


def ddp_participant() -> bool:
    """True in a process that Lightning's DDP launcher started for a rank other than 0
    (``trainer.devices=N +trainer.strategy=ddp``): it trains, but rank 0 alone writes the
    cache, the job folder and the logs. Under torchrun or SLURM (``RANK`` set),
    :mod:`losslands.launch` trains on rank 0 alone instead."""
    if "RANK" in os.environ:
        return False
    return int(os.environ.get("LOCAL_RANK", "0") or 0) > 0 or int(os.environ.get("NODE_RANK", "0") or 0) > 0


def _train(cfg, cache: TrainingCache, key: str, tcfg: dict, datamodule, loggers, force: bool,
           write: bool = True) -> Trained:
    out = cache.path(key)
    if write and force and out.exists():
        shutil.rmtree(out)
    if write:
        out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "last.ckpt"
    resume = ckpt if ckpt.exists() and _readable_checkpoint(ckpt) else None

    dm = datamodule if datamodule is not None else build_datamodule(cfg)
    model = build_model(cfg)
    module = Classifier(model, build_optimizer(cfg), num_classes=num_classes(cfg))
    trainer = L.Trainer(
        **OmegaConf.to_container(cfg.trainer, resolve=True),
        logger=list(loggers) or False,
        callbacks=[
            _DataToDevice(),
            ModelCheckpoint(dirpath=out, filename="last", save_top_k=1, enable_version_counter=False,
                            save_on_train_epoch_end=True),
            *build_callbacks(cfg),
            _ReplayHistory(),
        ],
        default_root_dir=str(out),
    )
    summary: dict[str, Any] = {
        "status": "running", "hash": key, "config": tcfg, "n_params": num_params(model),
        "resumed_from": str(resume) if resume else None, "losslands": __version__,
    }
    if write:
        write_json(out / "train_summary.json", summary)
    start = time.perf_counter()
    # The cache folder already holds the summary (and, on resume, the checkpoint) by design.
    warnings.filterwarnings("ignore", message="Checkpoint directory .* exists and is not empty")
    try:
        trainer.fit(module, datamodule=dm, ckpt_path=str(resume) if resume else None)
    except DivergenceError as e:
        e.training_summary = _finish(out, summary, module, start, status="diverged", error=str(e), write=write)
        raise
    except BaseException as e:
        e.training_summary = _finish(out, summary, module, start, status="interrupted", error=repr(e),
                                     write=write)
        raise
    if trainer.interrupted:
        e = KeyboardInterrupt("training interrupted; rerun the same command to resume")
        e.training_summary = _finish(out, summary, module, start, status="interrupted",
                                     error="interrupted by the user", write=write)
        raise e
    model = model.cpu()
    if write:
        save_torch(out / "model.pt", model.state_dict())
    summary = _finish(out, summary, module, start, status="completed", write=write)
    return Trained(model, summary, key, out, trained_now=True)


def failed_training_summary(cfg: DictConfig, error: BaseException) -> dict[str, Any] | None:
    """The summary of ``cfg``'s own training if ``error`` stopped it (diverged, interrupted),
    else None (e.g. the error came from another training, such as a pairwise probe's partner).

    The training summary travels on the exception as ``training_summary`` (set by the training
    that failed), so the job can record it in its folder for the report.
    """
    summary = getattr(error, "training_summary", None)
    if not isinstance(summary, dict):
        return None
    try:
        key = training_hash(training_config(cfg))
    except Exception:  # a config this broken did not train at all
        return None
    return summary if summary.get("hash") == key else None


def _finish(out: Path, summary: dict, module: Classifier, start: float, status: str, error: str | None = None,
            write: bool = True) -> dict:
    history = module.history
    final = {k: v for k, v in (history[-1] if history else {}).items() if "/" in k}
    summary = {
        **summary,
        "status": status,
        "error": error,
        "epochs": len(history),
        "final": final,
        "history": history,
        "probe_history": getattr(module, "probe_history", []),
        "wall_seconds": time.perf_counter() - start,
        "train_seconds": sum(h.get("seconds", 0.0) for h in history),
    }
    if write:
        write_json(out / "train_summary.json", summary)
    return summary
