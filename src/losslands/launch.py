"""Data-parallel jobs: one probe job run by several processes (``torchrun``, SLURM's ``srun``).

The entry (:mod:`losslands.__main__`) hands a job to :func:`run_distributed` when the
environment names more than one process: torchrun's ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``/
``MASTER_ADDR``/``MASTER_PORT``, or, when those are absent, SLURM's (:func:`distributed_env`).

A job's course on ``N`` ranks:

1. Rank 0 alone, before any process group exists: the "already done" check, the loggers, the
   data, training or reuse through the cache (file lock), and, for a pairwise probe, the partner
   model. No group exists yet so Lightning and torchmetrics see one process (torchmetrics would
   otherwise try to sync its metrics with ranks that are not training), and the launcher's
   variables are hidden from Lightning while it trains (:func:`single_process_env`).
2. Every rank joins the process group (the others have been waiting in its rendezvous, for up
   to ``LOSSLANDS_DIST_WAIT_MIN`` minutes, default a day, while rank 0 trained); rank 0
   broadcasts the trained weights, or that the job was already done, or its error.
3. Every rank runs the probe on its shard of the samples
   (:mod:`losslands.curvature.distributed`); only rank 0 writes files and logs.

A failure: on rank 0 before the group exists, its error is broadcast and the other ranks stop
with one line; any other error ends that process, and torchrun (or ``srun --kill-on-bad-exit``)
ends the others. Only rank 0 prints a full traceback (``LOSSLANDS_DIST_VERBOSE=1``: all do).

Training itself stays single-process here; data-parallel training is Lightning's own
(``trainer.devices=N trainer.strategy=ddp``, launched by Lightning, not by torchrun): train
that way with ``probe=none`` first, then probe with torchrun, which reuses the cached weights.

Over ~300 lines: rank setup, scheduler environments and failure handling are one launch concern.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import re
import shutil
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from losslands.curvature.distributed import Shard

# torch is imported inside the functions that use it: the entry reads the environment (and a
# bad config fails) before torch is imported.

log = logging.getLogger(__name__)

# torchrun's variables, which this module also sets from SLURM's
TORCHRUN_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")
# what Lightning reads to decide it runs in a cluster (hidden while rank 0 trains)
_LAUNCHER_VARS = (*TORCHRUN_VARS, "LOCAL_WORLD_SIZE", "GROUP_RANK", "GROUP_WORLD_SIZE",
                  "ROLE_RANK", "ROLE_WORLD_SIZE", "ROLE_NAME", "TORCHELASTIC_RUN_ID",
                  "SUBMITIT_LOCAL_NTASKS")


class PeerFailed(RuntimeError):
    """Another rank (rank 0) failed; its error is shown there."""


def first_host(nodelist: str) -> str:
    """The first host of a SLURM host list: ``"gpu[03-05,9],cpu1"`` -> ``"gpu03"``."""
    depth, end = 0, len(nodelist)
    for i, c in enumerate(nodelist):
        depth += (c == "[") - (c == "]")
        if c == "," and depth == 0:
            end = i
            break
    first = nodelist[:end].strip()
    if not first:
        raise ValueError(f"no host in SLURM node list {nodelist!r}")
    # each bracket group becomes its first element; zero padding is kept ("03-05" -> "03")
    return re.sub(r"\[([^\]]*)\]", lambda m: re.split(r"[,-]", m.group(1))[0], first)


def distributed_env(environ: Mapping[str, str] | None = None) -> dict[str, str] | None:
    """torchrun's variables for this process, or None for a single-process job.

    torchrun's own (``WORLD_SIZE`` and ``RANK`` set) win. Otherwise, in a SLURM task started by
    ``srun`` with more than one task: ``RANK = SLURM_PROCID``, ``WORLD_SIZE =
    SLURM_STEP_NUM_TASKS`` (or ``SLURM_NTASKS``), ``LOCAL_RANK = SLURM_LOCALID``,
    ``MASTER_ADDR`` = the first host of ``SLURM_STEP_NODELIST`` (or ``SLURM_JOB_NODELIST``),
    ``MASTER_PORT`` = ``10000 + SLURM_JOB_ID mod 20000`` (the same in every task of the job);
    ``MASTER_ADDR``/``MASTER_PORT`` already set are kept. ``LOSSLANDS_DISTRIBUTED=0`` turns
    this off (e.g. one ``python`` in an allocation of several tasks, without ``srun``).
    submitit's local executor with several tasks (``hydra/launcher=local_dist``) is read the
    same way from its ``SUBMITIT_LOCAL_*`` variables, on 127.0.0.1.
    """
    env = os.environ if environ is None else environ
    if env.get("LOSSLANDS_DISTRIBUTED", "") == "0":
        return None
    if "WORLD_SIZE" in env and "RANK" in env:
        if int(env["WORLD_SIZE"]) < 2:
            return None
        return {
            "RANK": env["RANK"], "WORLD_SIZE": env["WORLD_SIZE"],
            "LOCAL_RANK": env.get("LOCAL_RANK", "0"),
            "MASTER_ADDR": env.get("MASTER_ADDR", "127.0.0.1"),
            "MASTER_PORT": env.get("MASTER_PORT", "29500"),
        }
    if int(env.get("SUBMITIT_LOCAL_NTASKS") or 1) > 1:  # submitit's local executor, one node
        return {
            "RANK": env["SUBMITIT_LOCAL_GLOBALID"], "WORLD_SIZE": env["SUBMITIT_LOCAL_NTASKS"],
            "LOCAL_RANK": env.get("SUBMITIT_LOCAL_LOCALID", "0"),
            "MASTER_ADDR": env.get("MASTER_ADDR") or "127.0.0.1",
            "MASTER_PORT": env.get("MASTER_PORT")
            or str(10000 + int(env.get("SUBMITIT_LOCAL_JOB_ID", "0")) % 20000),
        }
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if "SLURM_PROCID" not in env or not tasks or int(tasks) < 2:
        return None
    nodes = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    if not env.get("MASTER_ADDR") and not nodes:
        raise ValueError("SLURM task without SLURM_JOB_NODELIST: set MASTER_ADDR")
    port = env.get("MASTER_PORT") or str(10000 + int(env.get("SLURM_JOB_ID", "0")) % 20000)
    return {
        "RANK": env["SLURM_PROCID"], "WORLD_SIZE": str(int(tasks)),
        "LOCAL_RANK": env.get("SLURM_LOCALID", "0"),
        "MASTER_ADDR": env.get("MASTER_ADDR") or first_host(nodes or ""),
        "MASTER_PORT": port,
    }


def rank() -> int:
    """This process's rank (0 for a single-process job)."""
    env = distributed_env()
    return int(env["RANK"]) if env else 0


def _minutes(name: str, default: float) -> timedelta:
    return timedelta(minutes=float(os.environ.get(name, default)))


_GROUPS: dict[str, Any] = {}


def init() -> Shard | None:
    """Join the process group this environment names (idempotent); None for one process.

    Backends: gloo for CPU tensors and, when CUDA is available, NCCL for CUDA tensors (one
    device per rank: ``LOCAL_RANK`` modulo the visible devices). The default group, used for
    broadcasts and for the rendezvous, waits up to ``LOSSLANDS_DIST_WAIT_MIN`` minutes (1440):
    rank 0 may be training meanwhile; the reductions use a group that times out after
    ``LOSSLANDS_DIST_TIMEOUT_MIN`` (30).
    """
    import torch
    import torch.distributed as dist

    from losslands.curvature.distributed import Shard

    env = distributed_env()
    if env is None:
        return None
    if not dist.is_initialized():
        for k, v in env.items():
            os.environ.setdefault(k, v)
        select_device(env)
        backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend, rank=int(env["RANK"]), world_size=int(env["WORLD_SIZE"]),
                                timeout=_minutes("LOSSLANDS_DIST_WAIT_MIN", 1440))
        _GROUPS["compute"] = dist.new_group(timeout=_minutes("LOSSLANDS_DIST_TIMEOUT_MIN", 30))
    return Shard(dist.get_rank(), dist.get_world_size(), group=_GROUPS.get("compute"),
                 control=dist.group.WORLD)


def select_device(env: Mapping[str, str]) -> None:
    """Make ``cuda`` mean this rank's GPU (``LOCAL_RANK`` modulo the visible devices)."""
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_device(int(env.get("LOCAL_RANK", "0")) % torch.cuda.device_count())


def shutdown() -> None:
    """Leave the process group, if one was joined."""
    if "torch" not in sys.modules:  # nothing was started
        return
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
        _GROUPS.clear()


@contextlib.contextmanager
def single_process_env() -> Iterator[None]:
    """Hide torchrun's and SLURM's variables (Lightning would otherwise set up a cluster run
    and check its device count against them); restored afterwards."""
    saved = {k: v for k, v in os.environ.items() if k in _LAUNCHER_VARS or k.startswith("SLURM_")}
    for k in saved:
        del os.environ[k]
    try:
        yield
    finally:
        os.environ.update(saved)


def hydra_overrides(argv: list[str]) -> list[str]:
    """The command line for this rank: rank 0 keeps ``argv``; another rank gets a private
    temporary run folder (removed at exit) and no Hydra logging, so only rank 0 writes."""
    if "-m" in argv or "--multirun" in argv:
        raise SystemExit("losslands: one job per torchrun/srun launch; a sweep (-m) of distributed "
                         "jobs goes through a launcher (README, 'Scaling out')")
    if rank() == 0:
        return argv
    tmp = tempfile.mkdtemp(prefix=f"losslands-rank{rank()}-")
    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    keep = [a for a in argv if not a.startswith(("hydra.run.dir=", "hydra.output_subdir=",
                                                 "hydra/job_logging=", "hydra/hydra_logging="))]
    return [*keep, f"hydra.run.dir={tmp}", "hydra.output_subdir=null",
            "hydra/job_logging=disabled", "hydra/hydra_logging=disabled"]


def report_failure(error: BaseException) -> None:
    """On a rank other than 0: one line for its own error, nothing for rank 0's (rank 0 shows
    that in full); ``LOSSLANDS_DIST_VERBOSE=1``: the full traceback."""
    if os.environ.get("LOSSLANDS_DIST_VERBOSE") == "1":
        traceback.print_exception(error)
        return
    if isinstance(error, PeerFailed):
        return
    frame = traceback.extract_tb(error.__traceback__)[-1:] if error.__traceback__ else []
    where = f" ({frame[0].filename}:{frame[0].lineno})" if frame else ""
    print(f"losslands rank {rank()}: {type(error).__name__}: {error}{where}", file=sys.stderr)


def from_rank0(shard: Shard, compute: Callable[[], Any]) -> Any:
    """``compute()`` on rank 0, its (picklable) value on every rank; an error there raises
    :class:`PeerFailed` on the others instead of leaving them waiting."""
    payload: tuple[str, Any] = ("ok", None)
    error: BaseException | None = None
    if shard.is_main:
        try:
            payload = ("ok", compute())
        except Exception as e:
            error, payload = e, ("failed", f"{type(e).__name__}: {e}")
    payload = shard.broadcast_object(payload)
    if error is not None:
        raise error
    if payload[0] == "failed":
        raise PeerFailed(f"rank 0 failed: {payload[1]}")
    return payload[1]


def _portable(trained: Any) -> dict[str, Any]:
    """What other ranks need of a trained model: weights (on the CPU) and where it came from."""
    state = {k: v.detach().cpu() for k, v in trained.model.state_dict().items()}
    return {"state": state, "summary": trained.summary, "key": trained.key, "path": str(trained.path)}


def _rebuild(cfg: Any, portable: Mapping[str, Any]) -> Any:
    from losslands.training.fit import Trained, build_model

    model = build_model(cfg)
    model.load_state_dict(portable["state"])
    return Trained(model, portable["summary"], portable["key"], Path(portable["path"]), False)


def _partner_overrides(cfg: Any, pcfg: Any) -> dict[str, Any] | None:
    """The training overrides of a pairwise probe's second model, or None."""
    from losslands.probes._pairs import other_overrides
    from losslands.probes.base import load_probe

    if pcfg is None or not load_probe(pcfg.name).INFO.pairwise:
        return None
    try:
        return other_overrides(SimpleNamespace(optimizer_name=str(cfg.optimizer.name)),
                               pcfg.other, pcfg.pairs)
    except ValueError:  # the probe reports it (and its record says so)
        return None


def run_distributed(cfg: Any) -> dict[str, Any] | None:
    """One job on every rank of a data-parallel launch (see the module docstring).

    Returns:
        The probe record (or the training summary for ``probe=none``) on every rank.
    """

    from losslands.config import validate_job_config, with_overrides
    from losslands.io import read_json, write_json
    from losslands.loggers import JobLoggers
    from losslands.probes.runner import run_probe
    from losslands.task import (
        configure_process,
        probe_config,
        probe_context,
        probe_device,
        probe_key,
    )
    from losslands.training.cache import TrainingCache, training_config, training_hash
    from losslands.training.fit import build_datamodule, train_or_reuse

    env = distributed_env()
    if env is None:
        raise RuntimeError("run_distributed needs torchrun's or SLURM's environment")
    select_device(env)
    out = Path(cfg.dirs.output)
    live: dict[str, Any] = {}

    def checked() -> tuple[Any, str, str]:
        """The probe config, training key and probe key; every rank takes these from a config
        that rank 0 validated, so a bad config is reported once."""
        pcfg = probe_config(cfg)
        configure_process(cfg)
        key = training_hash(training_config(cfg))
        return pcfg, key, probe_key(key, pcfg.to_dict()) if pcfg is not None else ""

    def rank0() -> tuple[str, Any]:
        validate_job_config(cfg)
        pcfg, key, pkey = checked()
        out.mkdir(parents=True, exist_ok=True)
        result_path = out / "probes" / f"{cfg.probe.name}.json"
        if pcfg is not None and result_path.exists():
            old = read_json(result_path)
            if old.get("status") == "completed" and old.get("probe_key") == pkey:
                return "done", old
        cache = TrainingCache(cfg.dirs.cache)
        reused = cache.is_complete(key) and not cfg.train.get("force")
        job_type = "probe" if cfg.get("weights") or reused else "train"  # as task.run
        live["loggers"] = loggers = JobLoggers(cfg, out, job_type)
        live["dm"] = dm = build_datamodule(cfg)
        with single_process_env():
            live["trained"] = trained = train_or_reuse(cfg, datamodule=dm, loggers=loggers.lightning)
            partner = _partner_overrides(cfg, pcfg)
            if partner is not None:
                try:
                    train_or_reuse(with_overrides(cfg, partner))
                except Exception as e:  # the probe's own request fails and records it
                    log.warning("could not train the partner model %s: %r", partner, e)
        write_json(out / "train_summary.json", trained.summary)
        loggers.log_scalars("final", {k.replace("/", "_"): v for k, v in trained.summary["final"].items()})
        return "trained", _portable(trained)

    try:
        payload: tuple[str, Any] = ("", None)
        error: BaseException | None = None
        if int(env["RANK"]) == 0:
            try:
                payload = rank0()
            except Exception as e:
                error, payload = e, ("failed", f"{type(e).__name__}: {e}")
        shard = init()
        assert shard is not None
        kind, value = shard.broadcast_object(payload)
        if error is not None:
            raise error
        if kind == "failed":
            raise PeerFailed(f"rank 0 failed: {value}")
        pcfg, key, pkey = checked()
        if kind == "done" or pcfg is None:
            return value if kind == "done" else value["summary"]
        dm = live["dm"] if "dm" in live else build_datamodule(cfg)
        trained = live["trained"] if "trained" in live else _rebuild(cfg, value)
        device = probe_device(cfg)
        dm.to(device)
        model = trained.model.to(device).float().eval()
        ctx = probe_context(cfg, model, dm, device, key, trained.summary)

        def load_other(overrides: Mapping[str, Any]) -> Any:
            other_cfg = with_overrides(cfg, overrides)

            def cached() -> dict[str, Any]:
                other_key = training_hash(training_config(other_cfg))
                external = bool(other_cfg.get("weights"))  # a weights file: nothing to train
                if not external and not TrainingCache(other_cfg.dirs.cache).is_complete(other_key):
                    # Lightning would now train with a process group about (see the module)
                    raise RuntimeError(
                        f"the partner model {dict(overrides)} is not in the training cache: "
                        "train it first (python -m losslands probe=none ...), then rerun")
                with single_process_env():  # force=False: rank 0 retrained it already if asked
                    return _portable(train_or_reuse(other_cfg, force=False))

            other = _rebuild(other_cfg, from_rank0(shard, cached))
            return other.model.to(device).float().eval()

        ctx.load_other, ctx.shard = load_other, shard
        ctx.quiet = ctx.quiet or not shard.is_main
        main = shard.is_main
        return run_probe(cfg.probe.name, ctx, pcfg, out if main else None,
                         live.get("loggers"), pkey)
    finally:
        if "loggers" in live:
            live["loggers"].finish()
