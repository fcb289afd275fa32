"""Recovering from a damaged cache or a killed run: nothing blocks a rerun, nothing is lost."""

from __future__ import annotations

import csv
import logging

import pytest
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import CSVLogger

from losslands.training import fit
from losslands.training.cache import TrainingCache
from tests.conftest import TINY, compose_cfg

DAMAGE = {
    "truncated": lambda data: data[: len(data) // 2],
    "garbage": lambda data: b"this is not a torch file\n" * 10,
    "empty": lambda data: b"",
}


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _damage(path, how: str) -> None:
    path.write_bytes(DAMAGE[how](path.read_bytes()))


def _assert_logged_and_set_aside(caplog, path) -> None:
    aside = path.with_name(path.name + ".corrupt")
    assert aside.exists(), list(path.parent.iterdir())
    messages = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert any(str(path) in m and "unreadable" in m for m in messages), messages
    assert not any("weights_only=False" in m for m in messages)


@pytest.mark.parametrize("how", DAMAGE)
def test_corrupt_cached_model_is_set_aside_and_recomputed(tmp_path, caplog, how):
    first = fit.train_or_reuse(compose_cfg(tmp_path, *TINY))
    model_pt = first.path / "model.pt"
    _damage(model_pt, how)
    with caplog.at_level(logging.WARNING):
        again = fit.train_or_reuse(compose_cfg(tmp_path, *TINY))
    _assert_logged_and_set_aside(caplog, model_pt)
    assert again.trained_now and _same_weights(first.model, again.model)
    assert again.summary["status"] == "completed"
    # the recomputed file is sound: the next job reuses it
    assert not fit.train_or_reuse(compose_cfg(tmp_path, *TINY)).trained_now


class _Crash(Callback):
    """Simulates a kill at the start of the second epoch (after epoch 1's checkpoint)."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated kill")


def _killed_run(cfg, monkeypatch, loggers=()) -> None:
    callbacks = fit.build_callbacks(cfg)
    with monkeypatch.context() as m:
        m.setattr(fit, "build_callbacks", lambda cfg: [*callbacks, _Crash()])
        with pytest.raises(RuntimeError, match="simulated kill"):
            fit.train_or_reuse(cfg, loggers=loggers)


@pytest.mark.parametrize("how", DAMAGE)
def test_corrupt_checkpoint_is_set_aside_and_training_restarts(tmp_path, monkeypatch, caplog, how):
    reference = fit.train_or_reuse(compose_cfg(tmp_path / "ref", *TINY, "trainer.max_epochs=3"))
    cfg = compose_cfg(tmp_path / "run", *TINY, "trainer.max_epochs=3")
    _killed_run(cfg, monkeypatch)
    ckpt = TrainingCache(cfg.dirs.cache).path(reference.key) / "last.ckpt"
    _damage(ckpt, how)
    with caplog.at_level(logging.WARNING):
        rerun = fit.train_or_reuse(cfg)
    _assert_logged_and_set_aside(caplog, ckpt)
    assert rerun.summary["resumed_from"] is None  # started over
    assert [h["epoch"] for h in rerun.summary["history"]] == [1, 2, 3]
    assert _same_weights(reference.model, rerun.model)


def test_corrupt_cached_summary_is_set_aside_and_recomputed(tmp_path, caplog):
    first = fit.train_or_reuse(compose_cfg(tmp_path, *TINY))
    summary = first.path / "train_summary.json"
    summary.write_text(summary.read_text()[:40])
    with caplog.at_level(logging.WARNING):
        again = fit.train_or_reuse(compose_cfg(tmp_path, *TINY))
    _assert_logged_and_set_aside(caplog, summary)
    assert again.summary["status"] == "completed" and _same_weights(first.model, again.model)


def _csv_rows(logger: CSVLogger) -> list[dict]:
    with open(f"{logger.log_dir}/metrics.csv") as f:
        return list(csv.DictReader(f))


CURVATURE = ("callbacks=curvature", "callbacks.curvature.n_samples=32", "callbacks.curvature.lanczos_iters=4",
             "callbacks.curvature.hutchinson_samples=2", "callbacks.curvature.noise_samples=16")


@pytest.mark.parametrize("callbacks", [(), CURVATURE], ids=["plain", "curvature"])
def test_resumed_run_logs_the_whole_history(tmp_path, monkeypatch, callbacks):
    """A resumed job's metrics.csv equals an uninterrupted run's, epochs before the kill included."""
    reference_logger = CSVLogger(str(tmp_path / "ref_job"), name="csv", version="")
    fit.train_or_reuse(compose_cfg(tmp_path / "ref", *TINY, "trainer.max_epochs=3", *callbacks),
                       loggers=[reference_logger])
    cfg = compose_cfg(tmp_path / "run", *TINY, "trainer.max_epochs=3", *callbacks)
    _killed_run(cfg, monkeypatch, loggers=[CSVLogger(str(tmp_path / "job"), name="csv", version="")])
    # the rerun of the job starts a new logger in the same folder (Lightning clears its old file)
    logger = CSVLogger(str(tmp_path / "job"), name="csv", version="")
    resumed = fit.train_or_reuse(cfg, loggers=[logger])
    assert resumed.summary["resumed_from"]
    rows = _csv_rows(logger)
    assert sorted({r["epoch"] for r in rows}) == ["0", "1", "2"]
    assert rows == _csv_rows(reference_logger)
