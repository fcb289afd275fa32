"""Command line: ``python -m losslands [hydra overrides]`` (train or reuse, then probe)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from losslands.config import conf_dir, register_configs, register_resolvers, validate_job_config


def _app(cfg: DictConfig) -> None:
    # refuse a bad config before torch is even imported
    validate_job_config(cfg)
    from losslands.task import run

    try:
        run(cfg)
    except BaseException as e:
        _record_failed_training(cfg, e)
        raise


def _record_failed_training(cfg: DictConfig, error: BaseException) -> None:
    """Write this job's diverged or interrupted training summary into its folder, where the
    report finds it and lists the job with the error (a job folder without a summary would
    only say that training did not finish)."""
    from pathlib import Path

    from losslands.io import write_json
    from losslands.training.fit import failed_training_summary

    try:
        summary = failed_training_summary(cfg, error)
        if summary is not None:
            write_json(Path(cfg.paths.output) / "train_summary.json", summary)
    except Exception as e:  # the job's own error is the one to raise
        print(f"could not record the failed training in the job folder: {e!r}", file=sys.stderr)


def main() -> None:
    register_resolvers()
    register_configs()
    hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_app)()


if __name__ == "__main__":
    main()
