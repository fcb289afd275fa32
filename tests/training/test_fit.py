"""Training: determinism, cache reuse, resume after a kill, file lock, divergence, W&B files."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback

from losslands.io import read_json
from losslands.loggers import read_offline_run
from losslands.training import fit
from losslands.training.cache import TrainingCache
from losslands.training.module import DivergenceError
from tests.conftest import TINY, compose_cfg, run_cli


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_same_config_and_seed_give_identical_weights(tmp_path):
    a = fit.train_or_reuse(compose_cfg(tmp_path / "a", *TINY))
    b = fit.train_or_reuse(compose_cfg(tmp_path / "b", *TINY))
    c = fit.train_or_reuse(compose_cfg(tmp_path / "c", *TINY, "seed=7"))
    assert a.trained_now and b.trained_now and a.key == b.key
    assert _same_weights(a.model, b.model)
    assert not _same_weights(a.model, c.model)


def test_cache_is_reused_and_force_retrains(tmp_path):
    first = fit.train_or_reuse(compose_cfg(tmp_path, *TINY))
    again = fit.train_or_reuse(compose_cfg(tmp_path, *TINY))
    assert not again.trained_now and _same_weights(first.model, again.model)
    s = first.summary
    assert s["status"] == "completed" and s["epochs"] == 2 and len(s["history"]) == 2
    assert {"train/loss", "train/acc", "val/loss", "val/acc"} <= set(s["final"])
    assert s["n_params"] == sum(p.numel() for p in first.model.parameters())
    assert (first.path / "last.ckpt").exists() and (first.path / "model.pt").exists()
    forced = fit.train_or_reuse(compose_cfg(tmp_path, *TINY, "train.force=true"))
    assert forced.trained_now and _same_weights(first.model, forced.model)


def test_hash_ignores_paths_but_not_weight_decay(tmp_path):
    a = compose_cfg(tmp_path, *TINY)
    b = compose_cfg(tmp_path / "elsewhere", *TINY, "data.eval_batch_size=7")
    c = compose_cfg(tmp_path, *TINY, "optimizer.weight_decay=0.0")
    from losslands.training.cache import training_config, training_hash

    assert training_hash(training_config(a)) == training_hash(training_config(b))
    assert training_hash(training_config(a)) != training_hash(training_config(c))


class _Crash(Callback):
    """Simulates a kill at the start of the second epoch (after epoch 1's checkpoint)."""

    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated kill")


def test_killed_run_resumes_to_the_same_weights(tmp_path, monkeypatch):
    reference = fit.train_or_reuse(compose_cfg(tmp_path / "ref", *TINY, "trainer.max_epochs=3"))
    cfg = compose_cfg(tmp_path / "run", *TINY, "trainer.max_epochs=3")
    with monkeypatch.context() as m:
        m.setattr(fit, "build_callbacks", lambda cfg: [_Crash()])
        with pytest.raises(RuntimeError, match="simulated kill"):
            fit.train_or_reuse(cfg)
    cache = TrainingCache(cfg.dirs.cache)
    key = reference.key
    assert cache.summary(key)["status"] == "interrupted" and not cache.is_complete(key)
    resumed = fit.train_or_reuse(cfg)
    assert resumed.summary["resumed_from"].endswith("last.ckpt")
    assert [h["epoch"] for h in resumed.summary["history"]] == [1, 2, 3]
    assert _same_weights(reference.model, resumed.model)


def test_divergence_stops_with_a_clear_error(tmp_path):
    cfg = compose_cfg(tmp_path, *TINY, "optimizer.lr=1e30")
    with pytest.raises(DivergenceError, match="optimizer.lr"):
        fit.train_or_reuse(cfg)
    key = next(p.name for p in Path(cfg.dirs.cache).iterdir() if p.is_dir())
    assert TrainingCache(cfg.dirs.cache).summary(key)["status"] == "diverged"


def _train_in_child(root: str, queue) -> None:
    out = fit.train_or_reuse(compose_cfg(Path(root), *TINY))
    queue.put(out.trained_now)


def test_concurrent_jobs_train_once(tmp_path):
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_train_in_child, args=(str(tmp_path), q)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
        assert p.exitcode == 0
    assert sorted([q.get(), q.get()]) == [False, True]


def test_cli_offline_wandb_run_holds_the_metrics(tmp_path):
    run_cli(*TINY, "logger=wandb", "probe=eval", "hydra.run.dir=job", cwd=tmp_path)
    job = tmp_path / "job"
    result = read_json(job / "probes" / "eval.json")
    assert result["status"] == "completed" and result["probe"] == "eval" and result["seconds"] > 0
    summary = read_json(job / "train_summary.json")
    # The eval probe and Lightning's validation measure the same model on the same test split.
    assert result["result"]["test"]["acc"] == pytest.approx(summary["final"]["val/acc"], abs=1e-6)
    assert result["result"]["test"]["loss"] == pytest.approx(summary["final"]["val/loss"], rel=1e-5)
    run = read_offline_run(next((job / "wandb").glob("offline-run-*")))
    assert run["run"]["name"] == "sgd-s42" and run["run"]["group"] == "sgd" and run["run"]["job_type"] == "train"
    assert run["summary"]["eval/test_acc"] == pytest.approx(result["result"]["test"]["acc"])
    assert run["summary"]["val/acc"] == pytest.approx(summary["final"]["val/acc"])
    assert (job / "csv" / "metrics.csv").read_text().count("\n") >= 3
    # A second job with the same training config reuses the cache and logs as a probe job.
    run_cli(*TINY, "logger=wandb", "probe=eval", "hydra.run.dir=job2", cwd=tmp_path)
    run2 = read_offline_run(next((tmp_path / "job2" / "wandb").glob("offline-run-*")))
    assert run2["run"]["job_type"] == "probe"


def test_multirun_over_optimizers_and_seeds(tmp_path):
    run_cli("-m", *TINY, "trainer.max_epochs=1", "optimizer=sgd,momentum,adamw", "seed=0,1",
         "hydra.sweep.dir=sweep", cwd=tmp_path)
    jobs = sorted((tmp_path / "sweep").glob("*/probes/eval.json"))
    assert len(jobs) == 6
    records = [read_json(j) for j in jobs]
    assert {(r["optimizer"], r["seed"]) for r in records} == {(o, s) for o in ("sgd", "momentum", "adamw") for s in (0, 1)}
    assert len({r["train_hash"] for r in records}) == 6


def test_line_plots_reach_the_offline_run(tmp_path):
    """Probe curves become W&B line plots: the chart's table holds every point of every line."""
    from omegaconf import OmegaConf

    from losslands.loggers import JobLoggers

    cfg = OmegaConf.create({"logger": {"wandb": {"project": "t", "name": "sgd-s0", "group": "sgd"}}})
    loggers = JobLoggers(cfg, tmp_path, job_type="probe")
    loggers.log_lines("curve/loss_plot", "t", {"bezier": ([0, 0.5, 1], [1.0, 1.2, 0.9]),
                                                "linear": ([0, 0.5, 1], [1.0, 2.0, 0.9])})
    loggers.finish()
    run = read_offline_run(next((tmp_path / "wandb").glob("offline-run-*")))
    rows = {k: v for step in run["history"] for k, v in step.items()}
    # line_series stores the points as a long table (one row per line and x): 2 lines x 3 points
    assert rows["curve/loss_plot_table/nrows"] == 6


def test_threads_knob_sets_torch_threads(tmp_path):
    """`threads=1` pins the job to one CPU thread (parallel sweeps); null leaves torch's choice."""
    from losslands.task import run

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        run(compose_cfg(tmp_path, *TINY, "threads=1"))
        assert torch.get_num_threads() == 1
        torch.set_num_threads(2)
        run(compose_cfg(tmp_path, *TINY, "threads=null"))
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_lightning_ddp_training_caches_one_checkpoint(tmp_path):
    """trainer.devices=2 +trainer.strategy=ddp: Lightning starts rank 1 from rank 0's fit; rank 1
    must not wait for rank 0's cache lock (it did: a deadlock) nor write any file."""
    r = run_cli(*TINY, "trainer.devices=2", "+trainer.strategy=ddp", "probe=none", "logger=csv",
                "hydra.run.dir=job", cwd=tmp_path, timeout=300)
    assert "GLOBAL_RANK: 1" in r.stdout + r.stderr  # two processes trained
    entries = [p for p in (tmp_path / "cache").iterdir() if p.is_dir()]
    assert len(entries) == 1 and (entries[0] / "model.pt").exists()
    cached = read_json(entries[0] / "train_summary.json")
    assert cached["status"] == "completed" and cached["epochs"] == 2
    assert read_json(tmp_path / "job" / "train_summary.json")["status"] == "completed"


def test_a_store_supplies_the_training_and_receives_new_ones(tmp_path):
    store = tmp_path / "store"
    first = fit.train_or_reuse(compose_cfg(tmp_path / "a", *TINY, f"train.store={store}"))
    assert first.trained_now
    shelved = TrainingCache(store)
    assert shelved.is_complete(first.key)
    assert read_json(store / first.key / "train_summary.json") == first.summary
    assert sorted(p.name for p in (store / first.key).iterdir()) == ["model.pt", "train_summary.json"]
    # another machine: an empty cache, the store's weights and summary instead of a retraining
    with torch.no_grad():  # mark the stored weights, to tell them from a retraining's
        marked = {k: v + 1 for k, v in first.model.state_dict().items()}
    torch.save(marked, store / first.key / "model.pt")
    elsewhere = fit.train_or_reuse(compose_cfg(tmp_path / "b", *TINY, f"train.store={store}"))
    assert not elsewhere.trained_now and elsewhere.summary == first.summary
    assert all(torch.equal(elsewhere.model.state_dict()[k], marked[k]) for k in marked)
    # a forced retraining does not overwrite what the store holds
    forced = fit.train_or_reuse(compose_cfg(tmp_path / "b", *TINY, f"train.store={store}", "train.force=true"))
    assert forced.trained_now
    stored = torch.load(store / first.key / "model.pt", weights_only=True)
    assert all(torch.equal(stored[k], marked[k]) for k in marked)
