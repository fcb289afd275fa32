"""Job loggers: Weights & Biases (offline by default) and CSV, behind one small interface."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


class JobLoggers:
    """The loggers of one job.

    ``lightning`` goes to the Trainer; ``log_scalars``/``log_figure``/``log_table`` record probe
    results in the same runs. W&B runs are grouped by optimizer, named ``<optimizer>-s<seed>``,
    carry the job type (train, probe or report), tags and the full resolved config.
    """

    def __init__(self, cfg: DictConfig, output_dir: str | Path, job_type: str):
        self.output_dir = Path(output_dir)
        self.lightning: list[Any] = []
        self.csv = None
        self.wandb = None
        lcfg = cfg.get("logger") or {}
        if lcfg.get("csv", False):
            from lightning.pytorch.loggers import CSVLogger

            self.csv = CSVLogger(save_dir=str(self.output_dir), name="csv", version="")
            self.lightning.append(self.csv)
        wcfg = lcfg.get("wandb")
        if wcfg:
            from lightning.pytorch.loggers import WandbLogger

            mode = os.environ.get("WANDB_MODE") or wcfg.get("mode") or "offline"
            self.wandb = WandbLogger(
                project=wcfg.project,
                entity=wcfg.get("entity"),
                name=wcfg.get("name"),
                group=wcfg.get("group"),
                tags=list(wcfg.get("tags") or []),
                job_type=job_type,
                save_dir=str(self.output_dir),
                mode=mode,
                config=OmegaConf.to_container(cfg, resolve=True),
            )
            self.lightning.append(self.wandb)

    def log_scalars(self, prefix: str, values: dict[str, float]) -> None:
        """Record headline numbers: W&B summary + history, and a CSV row."""
        metrics = {f"{prefix}/{k}": float(v) for k, v in values.items() if _is_number(v)}
        if not metrics:
            return
        if self.wandb is not None:
            self.wandb.experiment.log(metrics)
            self.wandb.experiment.summary.update(metrics)
        if self.csv is not None:
            self.csv.log_metrics(metrics)
            self.csv.save()

    def log_figure(self, name: str, path: str | Path) -> None:
        if self.wandb is not None:
            import wandb

            self.wandb.experiment.log({name: wandb.Image(str(path))})

    def log_table(self, name: str, columns: list[str], rows: list[list[Any]]) -> None:
        if self.wandb is not None:
            import wandb

            self.wandb.experiment.log({name: wandb.Table(columns=columns, data=rows)})

    def finish(self) -> None:
        if self.csv is not None:
            self.csv.save()
        if self.wandb is not None:
            import wandb

            self.wandb.experiment  # noqa: B018 - make sure the run exists before finishing it
            wandb.finish()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)
