"""probe=intrinsic_dim: the d_int90 arithmetic on constructed curves; training in the full space
(d = D, dense projection) recovers the full-space accuracy and small d does not."""

from __future__ import annotations

import math

import numpy as np
import pytest

from losslands.flat import num_params
from losslands.probes import intrinsic_dim
from losslands.probes.base import PartialResults
from losslands.probes.runner import run_probe
from losslands.task import probe_config
from losslands.training import fit
from tests.conftest import TINY, assert_probe_outputs, compose_cfg, run_probe_cli
from tests.probes.tiny_jobs import job_context


def test_d_int_is_the_first_crossing_and_interpolates_in_log_d():
    f = intrinsic_dim.intrinsic_dimension
    d, interp = f([10, 100, 1000], [0.2, 0.5, 0.9], 0.8)
    assert d == 1000 and interp == pytest.approx(
        10**2.75
    )  # 3/4 of the way from 100 to 1000 in log d
    assert f([1000, 10, 100], [0.9, 0.2, 0.5], 0.8) == (
        d,
        interp,
    )  # order of the sweep is irrelevant
    assert f([10, 100, 1000], [0.2, 0.8, 0.9], 0.8) == (100, pytest.approx(100.0))  # exact hit
    assert f([10, 100], [0.85, 0.9], 0.8) == (10, 10)  # reached at once: the smallest d, a bound
    assert (
        f([10, 30, 100, 300], [0.1, 0.85, 0.7, 0.95], 0.8)[0] == 30
    )  # first crossing, not the last
    assert all(math.isnan(v) for v in f([10, 100], [0.1, 0.2], 0.8))
    with pytest.raises(ValueError, match="one accuracy per dimension"):
        f([10, 100], [0.1], 0.8)


def _trained_ctx(tmp_path, *overrides):
    cfg = compose_cfg(
        tmp_path,
        *TINY,
        "model.hidden=2",
        "optimizer=adamw",
        "optimizer.lr=0.01",
        "trainer.max_epochs=8",
        "data.augment=false",
        "probe=intrinsic_dim",
        *overrides,
    )
    dm = fit.build_datamodule(cfg)
    trained = fit.train_or_reuse(cfg, datamodule=dm)
    return job_context(cfg, trained.model, datamodule=dm), cfg


def test_full_dimension_reaches_the_full_space_accuracy(tmp_path):
    ctx, cfg = _trained_ctx(tmp_path)
    D = num_params(ctx.model)
    cfg.probe.mode, cfg.probe.dims, cfg.probe.projection = "sweep", [1, 30, D], "dense"
    cfg.probe.optimizer, cfg.probe.seeds = "job", [0]
    out = intrinsic_dim.run(ctx, probe_config(cfg))
    acc = dict(zip(out["dims"], out["acc_mean"], strict=True))
    assert out["num_params"] == D and out["epochs"] == 8 and not out["augment"]
    assert (
        out["full_acc"] > 0.3
    )  # the tiny problem is learnable, so the check below means something
    assert acc[D] >= 0.9 * out["full_acc"]
    assert acc[1] < acc[30] < acc[D]
    assert out["d_int90"] == D and 30 < out["d_int90_interp"] <= D
    s = intrinsic_dim.scalars(out)
    assert set(s) == {"d_int90", "d_int90_std", "d_int90_interp", "full_acc", "acc_d1", "acc_d30",
                      f"acc_d{D}", "reached_90", "d_max", "n_seeds", "trainings", "steps"}
    assert s["reached_90"] == 1.0 and s["d_max"] == D
    with pytest.raises(ValueError, match="probe.dims"):
        cfg.probe.dims = [D + 1]
        intrinsic_dim.run(ctx, probe_config(cfg))


def test_cli_writes_json_and_figure(tmp_path):
    job = run_probe_cli(
        tmp_path,
        "intrinsic_dim",
        "trainer.max_epochs=1",
        "probe.mode=sweep",
        "probe.dims=[2,8]",
        "probe.seeds=[0,1]",
        "probe.epochs=1",
    )
    scalars = {"d_int90", "d_int90_interp", "full_acc", "acc_d2", "acc_d8", "reached_90", "d_max"}
    res = assert_probe_outputs(job, "intrinsic_dim", scalars, exact=False)["result"]
    assert res["n_seeds"] == 2 and len(res["runs"]) == 4
    acc = np.array([[r["test_acc"] for r in res["runs"] if r["seed"] == s] for s in (0, 1)])
    np.testing.assert_allclose(res["acc_mean"], acc.mean(0))
    assert (tmp_path / "job" / "probes" / "intrinsic_dim.png").stat().st_size > 0


@pytest.mark.parametrize("missing", [math.nan, None])  # in memory / read back from JSON
def test_scalars_say_when_no_dimension_reaches_90_percent(missing):
    result = {"d_int90": missing, "d_int90_std": missing, "d_int90_interp": missing,
              "full_acc": 0.6, "dims": [10, 100], "acc_mean": [0.1, 0.2], "n_reached": 0,
              "n_seeds": 2, "trainings": 4, "steps": 40}
    s = intrinsic_dim.scalars(result)
    assert s["reached_90"] == 0.0 and s["d_max"] == 100.0 and math.isnan(s["d_int90"])


def test_a_killed_sweep_resumes_at_the_next_dimension(tmp_path, monkeypatch):
    ctx, cfg = _trained_ctx(tmp_path)
    cfg.probe.dims, cfg.probe.projection, cfg.probe.epochs = [2, 8], "dense", 2
    cfg.probe.mode, cfg.probe.seeds = "sweep", [0]
    real = intrinsic_dim.train_in_subspace
    calls = []

    def killed_at_d8(loss, theta0, d, **kw):
        if d == 8:
            raise KeyboardInterrupt  # what a killed job looks like from inside
        calls.append(d)
        return real(loss, theta0, d, **kw)

    out = tmp_path / "resumed"
    monkeypatch.setattr(intrinsic_dim, "train_in_subspace", killed_at_d8)
    with pytest.raises(KeyboardInterrupt):
        run_probe("intrinsic_dim", ctx, probe_config(cfg), out, pkey="key")
    partial = out / "probes" / "intrinsic_dim.partial.json"
    assert calls == [2] and partial.exists()

    def counted(loss, theta0, d, **kw):
        calls.append(d)
        return real(loss, theta0, d, **kw)

    monkeypatch.setattr(intrinsic_dim, "train_in_subspace", counted)
    resumed = run_probe("intrinsic_dim", ctx, probe_config(cfg), out, pkey="key")["result"]
    assert calls == [2, 8] and not partial.exists()  # d=2 was not trained again
    # an uninterrupted run gives the same numbers (same data order and projection per d)
    fresh = run_probe("intrinsic_dim", ctx, probe_config(cfg), tmp_path / "fresh", pkey="key")["result"]
    assert calls == [2, 8, 2, 8]
    assert resumed["runs"] == fresh["runs"]


def test_saved_pieces_of_another_probe_key_or_an_unreadable_file_are_ignored(tmp_path):
    path = tmp_path / "p.partial.json"
    store = PartialResults(path, "a")
    store.put("x", {"v": 1})
    assert PartialResults(path, "a").get("x") == {"v": 1}
    assert PartialResults(path, "b").get("x") is None  # another config or training run
    path.write_text("{not json")
    assert PartialResults(path, "a").get("x") is None
    store.clear()
    assert not path.exists() and store.get("x") is None
    memory = PartialResults()  # no file: pieces live in memory
    memory.put("y", 2)
    assert memory.get("y") == 2 and not list(tmp_path.iterdir())


def test_search_finds_the_smallest_reaching_d_with_early_stopping_and_reuses_pieces(tmp_path, monkeypatch):
    from losslands.probes.base import PieceStore

    ctx, cfg = _trained_ctx(tmp_path)
    ctx.store = PieceStore(tmp_path / "pieces")
    ctx.train_key = "k"
    D = num_params(ctx.model)
    cfg.probe.projection, cfg.probe.optimizer, cfg.probe.seeds = "dense", "job", [0]
    cfg.probe.d_start, cfg.probe.growth, cfg.probe.resolution = 2, 4.0, 1.0
    real = intrinsic_dim.train_in_subspace
    calls = []

    def counted(loss, theta0, d, **kw):
        calls.append(d)
        return real(loss, theta0, d, **kw)

    monkeypatch.setattr(intrinsic_dim, "train_in_subspace", counted)
    out = intrinsic_dim.run(ctx, probe_config(cfg))
    (seed,) = out["per_seed"]
    accs = dict(seed["tried"])
    target = out["target_acc"]
    assert seed["d_int90"] is not None and accs[seed["d_int90"]] >= target
    assert seed["d_below"] is None or accs[seed["d_below"]] < target
    assert seed["d_int90"] <= D and len(calls) == len(accs) < 12
    run = next(r for r in out["runs"] if r["d"] == seed["d_int90"])
    # a run that reached the target stopped early, confirmed on the full test split
    if run["stop_reason"] == "target":
        assert run["steps"] < run["budget"] and run["test_acc"] >= target
    # a finer search reuses every training already done (keyed by what it depends on)
    cfg.probe.resolution = 0.25
    finer = intrinsic_dim.run(ctx, probe_config(cfg))
    assert set(accs) <= {d for d, _ in finer["per_seed"][0]["tried"]}
    assert len(calls) == len({d for d, _ in finer["per_seed"][0]["tried"]})


def test_a_plateau_below_the_target_stops_the_run(tmp_path):
    ctx, cfg = _trained_ctx(tmp_path)
    cfg.probe.mode, cfg.probe.dims, cfg.probe.projection, cfg.probe.seeds = "sweep", [1], "dense", [0]
    cfg.probe.eval_every, cfg.probe.patience, cfg.probe.min_delta = 2, 2, 0.5
    out = intrinsic_dim.run(ctx, probe_config(cfg))
    (run,) = out["runs"]
    assert run["stop_reason"] == "plateau" and run["steps"] < run["budget"]
    assert len(run["checks"]) == 3  # the first check sets the best, two more without progress


def test_a_later_projection_seed_starts_from_the_previous_bracket(tmp_path):
    ctx, cfg = _trained_ctx(tmp_path)
    cfg.probe.projection, cfg.probe.optimizer, cfg.probe.seeds = "dense", "job", [0, 1]
    cfg.probe.d_start, cfg.probe.growth, cfg.probe.resolution = 2, 4.0, 1.0
    out = intrinsic_dim.run(ctx, probe_config(cfg))
    first, second = out["per_seed"]
    assert first["hint"] is None and first["d_below"] is not None and first["d_int90"] is not None
    assert second["hint"] == [first["d_below"], first["d_int90"]]
    assert second["tried"][0][0] == first["d_int90"]
    cfg.probe.warm_start = False
    cold = intrinsic_dim.run(ctx, probe_config(cfg))["per_seed"][1]
    assert cold["hint"] is None and cold["tried"][0][0] == 2


def _stored(stop_reason, checks, target=0.6, steps=40):
    return {"d": 8, "seed": 0, "test_acc": 0.61, "test_loss": 1.0, "train_loss": 1.1, "steps": steps,
            "budget": 50, "stop_reason": stop_reason, "checks": checks, "target": target}


def test_brackets_read_each_projection_seed_as_bounds_and_flag_a_budget_bound_lower_end():
    def run(d, seed, acc, stop):
        return {"d": d, "seed": seed, "test_acc": acc, "stop_reason": stop}

    result = {"target_acc": 0.6, "per_seed": [{"seed": 0, "d_int90": 400}, {"seed": 1, "d_int90": 300},
                                              {"seed": 2, "d_int90": None}, {"seed": 3, "d_int90": 100}],
              "runs": [run(100, 0, 0.5, "plateau"), run(900, 0, 0.7, "target"), run(300, 0, 0.59, "budget"),
                       run(400, 0, 0.61, "target"), run(300, 1, 0.65, "target"), run(100, 1, 0.4, "plateau"),
                       run(100, 2, 0.3, "plateau"), run(900, 2, 0.55, "budget"), run(100, 3, 0.6, "target")]}
    assert intrinsic_dim.brackets(result) == [
        intrinsic_dim.Bracket(0, 400, 300, True),   # the largest failing d below d_int90 ran out of budget
        intrinsic_dim.Bracket(1, 300, 100, False),  # ... plateaued: a lower end for a longer budget too
        intrinsic_dim.Bracket(2, None, 900, True),  # missed: the largest d tried
        intrinsic_dim.Bracket(3, 100, None, False),  # reached at the first d: no lower end
    ]


def test_replay_gives_another_targets_run_only_where_the_stored_training_determines_it():
    replay = intrinsic_dim.replay
    # stopped at target 0.6 at its last check (held-out 0.62, full 0.61)
    hit = _stored("target", [[10, 0.5], [20, 0.55], [40, 0.62, 0.61]])
    same = replay(hit, 0.6)
    assert same == {k: v for k, v in hit.items() if k != "target"}  # its own target: itself
    lower = replay(hit, 0.58)  # no earlier check passed 0.58: the same stop
    assert lower["stop_reason"] == "target" and lower["checks"] == [[10, 0.5], [20, 0.55], [40, 0.62, 0.61]]
    assert replay(hit, 0.52) is None  # check 20 passed 0.52, where the full split was not evaluated
    assert replay(hit, 0.615) is None  # full 0.61 < 0.615 at the stop: that run goes on
    # ended by its budget without reaching 0.6: every higher target ends the same way
    miss = _stored("budget", [[10, 0.5], [20, 0.61, 0.59], [40, 0.58]], steps=50)
    high = replay(miss, 0.605)
    assert high["stop_reason"] == "budget" and high["steps"] == 50
    assert high["checks"] == [[10, 0.5], [20, 0.61, 0.59], [40, 0.58]]
    assert replay(miss, 0.62)["checks"] == [[10, 0.5], [20, 0.61], [40, 0.58]]
    assert replay(miss, 0.59) is None  # reached at check 20, whose metrics were not kept
    assert replay(miss, 0.55) is None  # check 40 passed 0.55 without a full-split evaluation
    # a plateau stop keeps the metrics of its last check: a target reached exactly there is known
    flat = _stored("plateau", [[10, 0.5], [20, 0.62, 0.61]], steps=20)
    assert replay(flat, 0.605)["stop_reason"] == "target" and replay(flat, 0.605)["steps"] == 20
    assert replay(flat, 0.7)["stop_reason"] == "plateau"


def test_jobs_at_one_seed_share_subspace_trainings_with_exactly_their_own_results(tmp_path, monkeypatch):
    """Two models from one initialisation (other optimizers): the second job reuses the first's
    trainings where replay determines them, and its result equals a run on an empty store."""
    from losslands.probes.base import PieceStore

    a, cfg = _trained_ctx(tmp_path / "a")
    b, _ = _trained_ctx(tmp_path / "b", "optimizer.lr=0.003")
    assert a.init_key == b.init_key and a.train_key == b.train_key == ""
    cfg.probe.projection, cfg.probe.seeds = "dense", [0]
    cfg.probe.d_start, cfg.probe.growth, cfg.probe.resolution = 2, 4.0, 1.0
    pcfg = probe_config(cfg)
    real, calls = intrinsic_dim.train_in_subspace, []
    monkeypatch.setattr(intrinsic_dim, "train_in_subspace",
                        lambda *args, **kw: calls.append(1) or real(*args, **kw))
    b.store = PieceStore(tmp_path / "alone")
    alone = intrinsic_dim.run(b, pcfg)
    trained_alone = len(calls)
    a.store = b.store = PieceStore(tmp_path / "shared")
    first = intrinsic_dim.run(a, pcfg)
    calls.clear()
    shared = intrinsic_dim.run(b, pcfg)
    assert first["target_acc"] != shared["target_acc"]
    assert shared["runs"] == alone["runs"] and shared["per_seed"] == alone["per_seed"]
    # here every training of the lower target is determined by the first job's (8 run alone)
    assert len(calls) < trained_alone


def test_piece_keys_share_across_optimizers_only_with_the_fixed_subspace_optimizer(tmp_path):
    a, cfg = _trained_ctx(tmp_path / "a")
    b, _ = _trained_ctx(tmp_path / "b", "optimizer=sgd")
    a.train_key, b.train_key = "ka", "kb"
    import dataclasses

    key = lambda ctx, opt: intrinsic_dim.piece_key(  # noqa: E731
        ctx, dataclasses.replace(probe_config(cfg), optimizer=opt), 8, 0, 2, False)
    assert a.init_key == b.init_key and key(a, "adam") == key(b, "adam")
    assert key(a, "job") != key(b, "job")  # each job's own optimizer trains its subspace
    import torch

    b.device = torch.device("meta")  # another device gives other bits
    assert key(a, "adam") != key(b, "adam")
