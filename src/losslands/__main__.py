"""Command line: ``python -m losslands [hydra overrides]`` (train or reuse, then probe)."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from losslands.config import conf_dir, register_resolvers, validate_job_config


def _app(cfg: DictConfig) -> None:
    # refuse a bad config before torch is even imported
    validate_job_config(cfg)
    from losslands.task import run

    run(cfg)


def main() -> None:
    register_resolvers()
    hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_app)()


if __name__ == "__main__":
    main()
