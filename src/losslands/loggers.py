"""Job loggers: Weights & Biases (offline by default) and CSV, behind one small interface."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf


class JobLoggers:
    """The loggers of one job.

    ``lightning`` goes to the Trainer; ``log_scalars``/``log_figure``/``log_table``/``log_lines`` record probe
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

    def log_lines(self, name: str, xname: str, series: dict[str, tuple[list, list]]) -> None:
        """A W&B line plot with one line per series (``{label: (xs, ys)}``)."""
        if self.wandb is not None and series:
            import wandb

            keys = list(series)
            chart = wandb.plot.line_series(
                xs=[list(series[k][0]) for k in keys],
                ys=[list(series[k][1]) for k in keys],
                keys=keys,
                title=name,
                xname=xname,
            )
            self.wandb.experiment.log({name: chart})

    def finish(self) -> None:
        if self.csv is not None:
            self.csv.save()
        if self.wandb is not None:
            import wandb

            self.wandb.experiment  # noqa: B018 - make sure the run exists before finishing it
            wandb.finish()
            # finish() can return before the offline run file is fully written; teardown waits
            # for the writer, so the run can be read (or synced) as soon as the job returns
            wandb.teardown()


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def read_offline_run(path: str | Path) -> dict[str, Any]:
    """Read an offline W&B run (``offline-run-*/run-*.wandb``) without a server.

    The file is a sequence of protobuf ``Record`` messages in W&B's block log format (a 7-byte
    file header, then 32 KiB blocks of records with a 7-byte header: crc32, length, type).
    Returns ``{"run": {...}, "history": [{key: value}], "summary": {key: value}}``.
    """
    import json
    import struct

    from wandb.proto import wandb_internal_pb2 as pb

    path = Path(path)
    if path.is_dir():
        path = next(path.glob("run-*.wandb"))
    data = path.read_bytes()
    block, pos, pending = 32768, 7, b""
    out: dict[str, Any] = {"run": {}, "history": [], "summary": {}}

    def handle(blob: bytes) -> None:
        rec = pb.Record()
        rec.ParseFromString(blob)
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            r = rec.run
            out["run"] = {"name": r.display_name, "group": r.run_group, "job_type": r.job_type,
                          "project": r.project, "tags": list(r.tags)}
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
        elif kind == "summary":
            for i in rec.summary.update:
                out["summary"][i.key or "/".join(i.nested_key)] = json.loads(i.value_json)

    while pos + 7 <= len(data):
        left = block - pos % block
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == 1:
            handle(chunk)
        elif kind == 2:
            pending = chunk
        elif kind == 3:
            pending += chunk
        elif kind == 4:
            handle(pending + chunk)
    return out
