"""Finding and composing the Hydra configs from Python (no ``sys.path`` tricks)."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

GROUPS = ("data", "model", "optimizer", "trainer", "probe", "logger", "callbacks")


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
