"""Command line: ``python -m losslands [hydra overrides]`` (train or reuse, then probe)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from losslands.config import conf_dir


def _app(cfg: DictConfig) -> None:
    from losslands.task import run

    run(cfg)


def main() -> None:
    hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_app)()


if __name__ == "__main__":
    main()
