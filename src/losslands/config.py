"""Finding and composing the Hydra configs from Python (no ``sys.path`` tricks)."""

from __future__ import annotations

import functools
import math
import os
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

GROUPS = ("data", "model", "optimizer", "trainer", "probe", "logger", "callbacks")

# numpy's seed range: Lightning replaces a seed outside it by another one with only a warning
SEED_RANGE = (0, 2**32 - 1)
# The CIFAR-10 split sizes, the bound of data.train_subset / data.val_subset on real data
CIFAR10_SPLITS = (50_000, 10_000)


def run_id() -> str:
    """A short id of this process (pid and a random part): two jobs started in the same second
    on one machine or several get different run folders (``hydra.run.dir`` ends with it)."""
    return _run_id(os.getpid())


@functools.cache
def _run_id(pid: int) -> str:
    # keyed by pid: a forked child must not inherit its parent's id
    return f"{pid}-{secrets.token_hex(2)}"


def next_seed(seed: int, count: int) -> int:
    """The seed after ``seed`` among ``0 .. count-1``, cyclically: the cross-seed partner of a
    study's pairwise probes (``${losslands.next_seed:${seed},3}``)."""
    seed, count = int(seed), int(count)
    if not 0 <= seed < count:
        raise ValueError(f"seed={seed} is outside 0..{count - 1}: the cross-seed pairing needs the "
                         f"study's seeds to be 0..{count - 1}")
    return (seed + 1) % count


def register_resolvers() -> None:
    """Register ``${losslands.run_id:}`` (see :func:`run_id`) and ``${losslands.next_seed:}``
    (see :func:`next_seed`). Idempotent; called by the entry point before Hydra resolves the
    run folder."""
    if not OmegaConf.has_resolver("losslands.run_id"):
        OmegaConf.register_new_resolver("losslands.run_id", run_id)
    if not OmegaConf.has_resolver("losslands.next_seed"):
        OmegaConf.register_new_resolver("losslands.next_seed", next_seed)


def conf_dir() -> Path:
    """The ``conf/`` folder: ``$LOSSLANDS_CONF`` or the repository's top-level ``conf/``."""
    if env := os.environ.get("LOSSLANDS_CONF"):
        return Path(env).resolve()
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "conf" / "config.yaml").exists():
            return parent / "conf"
    raise FileNotFoundError(
        "cannot find conf/config.yaml; install losslands from its repository with "
        "`pip install -e .` or set LOSSLANDS_CONF to the conf folder"
    )


def group_node(group: str, option: str) -> DictConfig:
    """One config group's node, e.g. ``group_node("optimizer", "sgd")`` (unresolved)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    register_configs()
    if GlobalHydra.instance().is_initialized():
        cfg = compose(config_name="config", overrides=[f"{group}={option}"])
    else:
        with initialize_config_dir(config_dir=str(conf_dir()), version_base=None):
            cfg = compose(config_name="config", overrides=[f"{group}={option}"])
    return cfg[group]


def with_overrides(cfg: DictConfig, overrides: Mapping[str, Any]) -> DictConfig:
    """A copy of ``cfg`` with groups swapped (``{"optimizer": "sgd"}``) and keys set (``{"seed": 1}``).

    A key naming a config group with a string value selects that group's option; any other key
    is a dotted path set to the value.
    """
    out = OmegaConf.create(OmegaConf.to_container(cfg, resolve=False))
    OmegaConf.set_struct(out, False)
    for k, v in overrides.items():
        if k in GROUPS and isinstance(v, str):
            out[k] = group_node(k, v)
        else:
            OmegaConf.update(out, k, v, merge=True)
    return out


class InvalidConfig(ValueError):
    """A job config value that no job could run with (raised before any data is loaded)."""


def validate_job_config(cfg: DictConfig | Mapping) -> None:
    """Refuse a job config whose training could not be meaningful, before any heavy work.

    Checks the values that would otherwise fail late (after data loading), be replaced
    silently (a seed outside numpy's range) or train nothing (``trainer.max_epochs=0``).
    Keys absent from ``cfg`` are not checked.

    Raises:
        InvalidConfig: naming every offending key, its value and the allowed range.
    """
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(dict(cfg))
    errors: list[str] = []

    def get(key: str) -> Any:
        return OmegaConf.select(cfg, key, default=None)

    seed = get("seed")
    if seed is not None and not (_is_int(seed) and SEED_RANGE[0] <= seed <= SEED_RANGE[1]):
        errors.append(f"seed={seed!r} must be an integer in {SEED_RANGE[0]}..{SEED_RANGE[1]} "
                      "(numpy's seed range)")
    epochs = get("trainer.max_epochs")
    if epochs is not None and not (_is_int(epochs) and epochs >= 1):
        errors.append(f"trainer.max_epochs={epochs!r} must be an integer >= 1 "
                      "(0 would keep the untrained initial weights)")
    for key in ("optimizer.lr", "optimizer.weight_decay"):
        value = get(key)
        if value is not None and not (_is_number(value) and 0 <= value < math.inf):
            errors.append(f"{key}={value!r} must be a finite number >= 0")
    errors += _subset_errors(cfg)
    errors += _weights_errors(cfg)
    model = cfg.get("model")
    if isinstance(model, DictConfig) and OmegaConf.is_missing(model, "_target_"):
        errors.append("model._target_ must name an nn.Module class importable from the Python "
                      "path (model=custom model._target_=mypkg.nets.Net +model.width=64)")
    if errors:
        raise InvalidConfig("invalid job config: " + "; ".join(errors))


def _subset_errors(cfg: DictConfig) -> list[str]:
    """``data.train_subset``/``data.val_subset`` against the sizes of the splits they cut."""
    data = cfg.get("data")
    if not isinstance(data, DictConfig):
        return []
    if "path" in data.keys():  # data=tensors (keys(): `in` skips ??? values); sizes from the file
        return _tensors_errors(data)
    if data.get("synthetic"):
        sizes = (data.get("synthetic_train", 2000), data.get("synthetic_test", 500))
        size_keys = ("data.synthetic_train", "data.synthetic_test")
    else:  # CIFAR-100 has CIFAR-10's split sizes
        name = "CIFAR-100" if data.get("dataset") == "cifar100" else "CIFAR-10"
        sizes, size_keys = CIFAR10_SPLITS, (f"the {name} train split", f"the {name} test split")
    errors = []
    for key, size, size_key in zip(("train_subset", "val_subset"), sizes, size_keys, strict=True):
        k = data.get(key)
        if k is not None and not (_is_int(k) and _is_int(size) and 1 <= k <= size):
            errors.append(f"data.{key}={k!r} must lie in 1..{size} ({size_key}), or be null")
    return errors


def _tensors_errors(data: DictConfig) -> list[str]:
    """``data=tensors`` needs its file and the number of classes."""
    errors = []
    path = None if OmegaConf.is_missing(data, "path") else data.get("path")
    if not path:
        errors.append("data.path must name a .pt or .npz file of train/test tensors "
                      "(data=tensors data.path=FILE)")
    elif not Path(str(path)).expanduser().is_file():
        errors.append(f"data.path={path!r}: no such file")
    if OmegaConf.is_missing(data, "num_classes"):
        errors.append("data.num_classes must be set for data=tensors (the number of classes, "
                      "which the model outputs)")
    elif not (_is_int(k := data.get("num_classes")) and k >= 1):
        errors.append(f"data.num_classes={k!r} must be an integer >= 1")
    return errors


def _weights_errors(cfg: DictConfig) -> list[str]:
    """``weights`` must name an existing file (or be null); ``weights_trust`` must be a bool."""
    errors = []
    weights, trust = cfg.get("weights"), cfg.get("weights_trust")
    if weights is not None and not (isinstance(weights, str) and weights):
        errors.append(f"weights={weights!r} must be the path of a weights file, or null")
    elif weights and not Path(weights).expanduser().is_file():
        errors.append(f"weights={weights!r}: no such file (relative to {Path.cwd()})")
    if trust is not None and not isinstance(trust, bool):
        errors.append(f"weights_trust={trust!r} must be true or false")
    return errors


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def coupled_weight_decay(optimizer_cfg: Mapping[str, Any]) -> float:
    """The L2 coefficient that is part of the optimised objective (0 for decoupled decay).

    SGD's and Adam's ``weight_decay`` add ``wd * theta`` to the gradient, i.e. minimise
    ``L + wd/2 |theta|^2``; AdamW decays the weights directly (Loshchilov & Hutter 2019,
    "Decoupled Weight Decay Regularization"), which no loss term reproduces.
    """
    wd = float(optimizer_cfg.get("weight_decay", 0.0) or 0.0)
    target = str(optimizer_cfg.get("_target_", ""))
    decoupled = target.endswith("AdamW") or bool(optimizer_cfg.get("decoupled_weight_decay", False))
    return 0.0 if decoupled else wd


def register_configs() -> None:
    """Register every probe's typed config as the Hydra structured config ``probe/<name>_schema``,
    which ``conf/probe/<name>.yaml`` extends, so a mistyped option fails at composition.
    Idempotent; called by the entry points, never at import."""
    from hydra.core.config_store import ConfigStore

    from losslands.probes.base import available_probes, load_probe

    store = ConfigStore.instance()
    for name in available_probes():
        store.store(group="probe", name=f"{name}_schema", node=load_probe(name).Config)
