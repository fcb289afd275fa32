"""The training cache: one folder per training configuration, keyed by a hash.

``<cache>/<hash>/`` holds ``last.ckpt`` (Lightning checkpoint, rewritten every epoch, so a
killed run resumes), ``model.pt`` (the final weights) and ``train_summary.json``. A file lock
makes concurrent jobs with the same training config train it once. A *store*
(``train.store``) is a second folder of the same layout holding only ``model.pt`` and
``train_summary.json``, meant to be committed beside published results: a training found there
is copied into the cache instead of being retrained.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from filelock import FileLock
from omegaconf import DictConfig, OmegaConf

from losslands.io import copy_file

# Keys that change neither the trained weights nor the cached summary, so they stay out of
# the hash. Everything else is in: an unknown new key costs a retraining, never a wrong reuse.
_DATA_IGNORED = {"root", "download", "eval_batch_size", "probe_seed", "name"}
_TRAINER_IGNORED = {
    "enable_progress_bar", "log_every_n_steps", "enable_model_summary", "num_sanity_val_steps",
    "profiler", "default_root_dir", "logger", "callbacks", "enable_checkpointing",
    "detect_anomaly", "barebones",
}

SCHEMA = 2

log = logging.getLogger(__name__)


def training_config(cfg: DictConfig | Mapping) -> dict[str, Any]:
    """The part of a job config that determines the trained weights and the training summary.

    With ``weights=PATH`` (external weights, no training) it also holds the file's sha256, and
    with a data file (``data.path``) that file's sha256 in place of its path; neither key
    appears otherwise, so the keys of configs without them are unchanged.

    ``trainer.accelerator: auto`` is resolved to the device it selects here, since weights
    trained on a GPU differ from CPU-trained ones.
    """
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    data = {k: v for k, v in OmegaConf.to_container(cfg.data, resolve=True).items()
            if k not in _DATA_IGNORED and not k.startswith("_")}
    trainer = {k: v for k, v in OmegaConf.to_container(cfg.trainer, resolve=True).items()
               if k not in _TRAINER_IGNORED and v is not None}
    if "accelerator" in trainer:
        trainer["accelerator"] = _accelerator(str(trainer["accelerator"]))
    if data.get("path"):
        # a data file (data=tensors) is keyed by its content, not by where it lies
        data["sha256"] = file_sha256(data.pop("path"))
    key = {
        "schema": SCHEMA,
        "model": OmegaConf.to_container(cfg.model, resolve=True),
        "optimizer": OmegaConf.to_container(cfg.optimizer, resolve=True),
        "data": data,
        "trainer": trainer,
        "seed": int(cfg.seed),
        # Training-time probes do not change the weights but do fill the summary.
        "callbacks": _container(cfg.get("callbacks")),
    }
    if cfg.get("weights"):
        # external weights replace training: keyed by the file's content (sha256), so results
        # stay cached while the file is unchanged and a changed file is never taken for the old
        key["weights"] = {"sha256": file_sha256(cfg.weights)}
    return key


def file_sha256(path: str | os.PathLike) -> str:
    """The sha256 of a file's bytes (hex), computed once per file version."""
    p = Path(path).expanduser().resolve()
    st = p.stat()
    return _sha256(str(p), st.st_size, st.st_mtime_ns)


@functools.lru_cache(maxsize=64)
def _sha256(path: str, size: int, mtime_ns: int) -> str:
    # size and mtime are part of the cache key so a rewritten file is hashed again
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _accelerator(name: str) -> str:
    """Lightning's accelerator name for the device ``name`` selects (``auto`` resolved)."""
    if name == "cuda":
        return "gpu"
    if name != "auto":
        return name
    import torch

    if torch.cuda.is_available():
        return "gpu"
    if torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def _container(node: Any) -> Any:
    return OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else (node or {})


def init_hash(cfg: DictConfig | Mapping) -> str:
    """A hash of what a job's initial weights and training data depend on (model, data, seed):
    the same for every optimizer at one seed, unlike :func:`training_hash`."""
    key = training_config(cfg)
    return training_hash({"init": {k: key[k] for k in ("schema", "model", "data", "seed")}})


def training_hash(train_cfg: Mapping[str, Any]) -> str:
    """A short, stable hash of a training config (sorted-key JSON, sha256)."""
    blob = json.dumps(train_cfg, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


class TrainingCache:
    """Folders of trained models keyed by :func:`training_hash`."""

    def __init__(self, root: str | Path):
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / key

    def lock(self, key: str, timeout: float = -1) -> FileLock:
        """An inter-process lock for one training config (held while training it)."""
        self.root.mkdir(parents=True, exist_ok=True)
        return FileLock(str(self.root / f"{key}.lock"), timeout=timeout)

    def summary(self, key: str) -> dict | None:
        """The training summary, or None if the config has not finished training.

        An unreadable summary is moved aside (see :func:`set_aside`) and reads as None, so the
        training is redone instead of every later job failing on it.
        """
        f = self.path(key) / "train_summary.json"
        if not f.exists():
            return None
        try:
            with open(f) as fh:
                summary = json.load(fh)
            if not isinstance(summary, dict):
                raise ValueError(f"holds a {type(summary).__name__}, not a JSON object")
        except (ValueError, UnicodeDecodeError) as e:  # JSONDecodeError is a ValueError
            set_aside(f, e)
            return None
        return summary

    def is_complete(self, key: str) -> bool:
        s = self.summary(key)
        return bool(s) and s.get("status") == "completed" and (self.path(key) / "model.pt").exists()

    def copy_entry(self, key: str, to: TrainingCache) -> None:
        """Copy the completed training ``key`` (weights, then summary: the copy counts as
        complete only once both are there) into the cache ``to``."""
        for name in ("model.pt", "train_summary.json"):
            copy_file(self.path(key) / name, to.path(key) / name)


def set_aside(path: Path, error: BaseException) -> Path:
    """Rename an unreadable cached file to ``<name>.corrupt`` and log which one and why.

    The cached files are deterministic outputs of training, so the caller recomputes them;
    the corrupt copy is kept for inspection (a later one replaces it).
    """
    aside = path.with_name(path.name + ".corrupt")
    try:
        os.replace(path, aside)
    except FileNotFoundError:  # a concurrent job set it aside first
        pass
    log.warning("unreadable cached file %s (%s); moved it to %s and recomputing it",
                path, describe_error(error), aside.name)
    return aside


def describe_error(error: BaseException) -> str:
    """``Type: first line of the message``, for a one-line log or report entry."""
    lines = str(error).strip().splitlines()
    first = lines[0] if lines else ""
    if "weights only" in first.lower() or "weights_only" in first:
        # torch's message for a file that is not plain tensors suggests loading it unsafely
        first = "not a file of plain tensors"
    return f"{type(error).__name__}: {first}" if first else type(error).__name__
