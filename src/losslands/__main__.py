"""Command line: ``python -m losslands [hydra overrides]`` (train or reuse, then probe)."""

from __future__ import annotations

import sys

import hydra
from omegaconf import DictConfig

from losslands.config import conf_dir, register_configs, register_resolvers, validate_job_config


def _app(cfg: DictConfig) -> None:
    from losslands import launch  # reads the environment only (imports no torch)

    if launch.distributed_env() is not None:
        _app_distributed(cfg)
        return
    # refuse a bad config before torch is even imported
    validate_job_config(cfg)
    from losslands.task import run

    try:
        run(cfg)
    except BaseException as e:
        _record_failed_training(cfg, e)
        raise


def _app_distributed(cfg: DictConfig) -> None:
    """One job run by every process of a torchrun/srun launch (:mod:`losslands.launch`): the
    full error is shown by rank 0 only, one line by each other failing rank."""
    import logging

    from losslands import launch

    if launch.rank() != 0:  # rank 0 logs; the others' records would repeat it
        logging.disable(logging.WARNING)
    try:
        launch.run_distributed(cfg)  # rank 0 validates the config first
    except BaseException as e:
        if launch.rank() != 0:
            launch.report_failure(e)
            raise SystemExit(1) from None
        _record_failed_training(cfg, e)
        raise
    finally:
        launch.shutdown()  # also when a launcher (submitit) runs the job without main()


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
            write_json(Path(cfg.dirs.output) / "train_summary.json", summary)
    except Exception as e:  # the job's own error is the one to raise
        print(f"could not record the failed training in the job folder: {e!r}", file=sys.stderr)


def main() -> None:
    from losslands import launch

    register_resolvers()
    register_configs()
    if launch.distributed_env() is not None:  # torchrun or srun: only rank 0 writes run folders
        sys.argv[1:] = launch.hydra_overrides(sys.argv[1:])
    try:
        hydra.main(config_path=str(conf_dir()), config_name="config", version_base="1.3")(_app)()
    finally:
        launch.shutdown()


if __name__ == "__main__":
    main()
