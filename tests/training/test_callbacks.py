"""CurvatureCallback: same weights as without it, correct values, RNG/mode/grads untouched, resume."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import scipy.sparse.linalg
import torch
from lightning.pytorch.callbacks import Callback

from losslands.training import fit
from losslands.training.callbacks import CurvatureCallback
from tests.conftest import TINY, compose_cfg
from tests.probes.tiny_curvature import dense_hessian

pytestmark = pytest.mark.usefixtures("one_thread")

# hidden=2 keeps the MLP at 6,176 parameters so the dense Hessian is computable.
SMALL = (*TINY, "model.hidden=2")
PROBES = (
    "callbacks=curvature",
    "callbacks.curvature.n_samples=128",
    "callbacks.curvature.noise_samples=64",
    "callbacks.curvature.lanczos_iters=100",
)


def _same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _strip(history):
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.fixture(scope="module")
def runs(tmp_path_factory, one_thread):
    root = tmp_path_factory.mktemp("callbacks")
    cfg = compose_cfg(root / "with", *SMALL, *PROBES)
    with_cb = fit.train_or_reuse(cfg)
    without = fit.train_or_reuse(compose_cfg(root / "without", *SMALL, "callbacks=none"))
    return cfg, with_cb, without


def test_callback_does_not_change_the_trained_weights(runs):
    _, with_cb, without = runs
    assert with_cb.trained_now and without.trained_now and with_cb.key != without.key
    assert _same_weights(with_cb.model, without.model)
    assert without.summary["probe_history"] == []


def test_history_has_one_entry_per_epoch_matching_the_dense_hessian(runs):
    cfg, with_cb, _ = runs
    history = with_cb.summary["probe_history"]
    assert [h["epoch"] for h in history] == [1, 2]
    assert {"lambda_max", "trace", "trace_stderr", "noise_ratio"} <= set(history[-1])
    dm = fit.build_datamodule(cfg)
    x, y = dm.probe_subset(128)
    h = dense_hessian(with_cb.model, x, y)
    top = float(scipy.sparse.linalg.eigsh(h.numpy(), k=1, which="LA")[0][0])
    last = history[-1]
    assert last["lambda_max"] == pytest.approx(top, rel=1e-4)
    assert abs(last["trace"] - float(h.trace())) < 4 * last["trace_stderr"]
    assert last["noise_ratio"] == pytest.approx(last["lambda_c"] / last["lambda_h"])
    assert history[0]["lambda_max"] != pytest.approx(last["lambda_max"], rel=1e-3)


class _Snapshot(Callback):
    """Records RNG state, module modes, gradients and weights before the next callback."""

    def on_train_epoch_end(self, trainer, pl_module):
        params = list(pl_module.parameters())
        for i, p in enumerate(params):  # gradients to protect: tensors and None alternately
            p.grad = torch.full_like(p, 0.5 + i) if i % 2 == 0 else None
        self.rng = torch.get_rng_state()
        self.modes = [m.training for m in pl_module.modules()]
        self.grads = [
            (p.grad, None if p.grad is None else p.grad.clone()) for p in pl_module.parameters()
        ]
        self.weights = [p.detach().clone() for p in pl_module.parameters()]
        self.history_len = len(getattr(pl_module, "probe_history", []))


class _Compare(Callback):
    """Asserts that the callback between it and the snapshot changed nothing of the run's state."""

    def __init__(self, snapshot: _Snapshot):
        self.snapshot, self.checked = snapshot, 0

    def on_train_epoch_end(self, trainer, pl_module):
        s = self.snapshot
        assert torch.equal(s.rng, torch.get_rng_state())
        assert s.modes == [m.training for m in pl_module.modules()] and pl_module.training
        for p, (ref, value) in zip(pl_module.parameters(), s.grads, strict=True):
            assert p.grad is ref and (value is None or torch.equal(p.grad, value))
        assert all(
            torch.equal(p, w) for p, w in zip(pl_module.parameters(), s.weights, strict=True)
        )
        assert len(pl_module.probe_history) == s.history_len + 1
        assert "curvature/lambda_max" in trainer.callback_metrics
        self.checked += 1
        for p in pl_module.parameters():
            p.grad = None  # leave training as it would have been


def test_rng_modes_grads_and_weights_are_untouched(tmp_path, monkeypatch):
    snapshot = _Snapshot()
    compare = _Compare(snapshot)
    cb = CurvatureCallback(n_samples=64, noise_samples=32, lanczos_iters=5, hutchinson_samples=2)
    monkeypatch.setattr(fit, "build_callbacks", lambda cfg: [snapshot, cb, compare])
    fit.train_or_reuse(compose_cfg(tmp_path, *SMALL))
    assert compare.checked == 2


class _Crash(Callback):
    def on_train_epoch_start(self, trainer, pl_module):
        if trainer.current_epoch == 1:
            raise RuntimeError("simulated kill")


def test_resumed_run_keeps_the_history(tmp_path, monkeypatch, runs):
    cfg = compose_cfg(tmp_path, *SMALL, *PROBES)
    real = fit.build_callbacks
    with monkeypatch.context() as m:
        m.setattr(fit, "build_callbacks", lambda c: [*real(c), _Crash()])
        with pytest.raises(RuntimeError, match="simulated kill"):
            fit.train_or_reuse(cfg)
    resumed = fit.train_or_reuse(cfg)
    assert resumed.summary["resumed_from"]
    assert _strip(resumed.summary["probe_history"]) == _strip(runs[1].summary["probe_history"])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"every_n_epochs": 0},
        {"hutchinson_samples": 1},
        {"n_samples": 64, "noise_samples": 128},
        {"lanczos_iters": 1},
    ],
)
def test_bad_arguments_name_the_key(kwargs):
    with pytest.raises(ValueError, match="callbacks.curvature."):
        CurvatureCallback(**kwargs)


def test_subset_larger_than_the_training_split_names_the_key():
    trainer = SimpleNamespace(datamodule=SimpleNamespace(num_train=256))
    with pytest.raises(ValueError, match="callbacks.curvature.n_samples=512"):
        CurvatureCallback().on_fit_start(trainer, torch.nn.Module())
