"""probe=interpolation against models interpolated and evaluated by hand; BatchNorm recomputation."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from losslands.batchnorm import recompute_bn
from losslands.evaluate import PointEvaluator, evaluate
from losslands.flat import get_flat
from losslands.probes import interpolation
from tests.conftest import TINY, assert_probe_outputs, compose_cfg, run_probe_cli
from tests.probes.tiny_jobs import hand_line, job_context, mlp_pair

SMALL = ("probe.n_samples=96", "probe.test_samples=80", "probe.n_points=7", "probe.bn_batches=2")


def _ctx(tmp_path, model, other, *overrides, calls=None):
    cfg = compose_cfg(tmp_path, *TINY, "probe=interpolation", *SMALL, *overrides)
    return job_context(cfg, model, other=other, calls=calls), cfg


def test_curve_matches_hand_interpolated_models_and_barriers(tmp_path):
    model_a, model_b = mlp_pair(tmp_path, seed_b=3)
    calls = []
    ctx, cfg = _ctx(tmp_path, model_a, model_b, calls=calls)
    out = interpolation.run(ctx, cfg.probe)
    assert (
        calls == [{"optimizer": "momentum"}]
        and out["other"] == "momentum"
        and out["pair"] == "sgd-momentum"
    )
    data = {"train": ctx.probe_batches(96), "test": ctx.split_batches("test", 80)}
    assert out["n_train"] == 96 and out["n_test"] == 80 and not out["bn_recomputed"]
    alphas = out["alphas"]
    assert (
        len(alphas) == 7
        and alphas[0] == -1.0
        and alphas[-1] == 2.0
        and 0.0 in alphas
        and 1.0 in alphas
    )
    for name, batches in data.items():
        # the endpoints reproduce the two models' own losses and accuracies
        for model, alpha in ((model_a, 0.0), (model_b, 1.0)):
            own = evaluate(model, batches)
            i = alphas.index(alpha)
            # the same weights exactly; only float32 summation order differs (a few ulps)
            assert out[f"{name}_loss"][i] == pytest.approx(own["loss"], rel=2e-7)
            assert out[f"{name}_acc"][i] == own["acc"]
        expected = hand_line(model_a, model_b, alphas, batches)
        loss = np.array([e["loss"] for e in expected])
        acc = np.array([e["acc"] for e in expected])
        np.testing.assert_allclose(out[f"{name}_loss"], loss, rtol=1e-6)
        np.testing.assert_array_equal(out[f"{name}_acc"], acc)
        a = np.array(alphas)
        inside = (a >= 0) & (a <= 1)
        chord = (1 - a) * loss[a == 0] + a * loss[a == 1]
        acc_chord = (1 - a) * acc[a == 0] + a * acc[a == 1]
        prefix = "" if name == "train" else "test_"
        assert out[f"{prefix}barrier"] == pytest.approx(np.max((loss - chord)[inside]), abs=1e-6)
        assert out[f"{prefix}acc_barrier"] == pytest.approx(
            np.max((acc_chord - acc)[inside]), abs=1e-12
        )
    s = interpolation.scalars(out)
    assert set(s) >= {"barrier", "barrier_alpha", "test_barrier", "acc_barrier", "loss_a", "loss_b"}
    assert s["loss_a"] == out["train_loss"][alphas.index(0.0)]
    cols, rows = interpolation.tables(out)["curve"]
    assert cols[0] == "alpha" and len(rows) == 7
    assert interpolation.plot(out) is not None


def _bn_cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=4),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(4, 10),
    )
    with torch.no_grad():  # stored statistics far from anything the data produces
        model[1].running_mean.fill_(5.0)
        model[1].running_var.fill_(9.0)
    return model.eval()


def test_batchnorm_statistics_are_recomputed_on_training_batches(tmp_path):
    model_a, model_b = _bn_cnn(0), _bn_cnn(1)
    ctx, cfg = _ctx(tmp_path, model_a, model_b)
    bn = ctx.bn_batches(2)
    assert len(bn) == 2 and all(len(x) == int(cfg.data.batch_size) for x, _ in bn)
    # Hand computation: average over the batches of the batch mean and unbiased batch variance.
    feats = [model_a[0](x) for x, _ in bn]
    mean = torch.stack([f.mean((0, 2, 3)) for f in feats]).mean(0)
    var = torch.stack([f.transpose(0, 1).flatten(1).var(1, unbiased=True) for f in feats]).mean(0)
    evaluator = PointEvaluator(model_a, ctx.loss_fn, bn)
    carrier = evaluator.at(get_flat(model_a))
    torch.testing.assert_close(carrier[1].running_mean, mean.detach())
    torch.testing.assert_close(carrier[1].running_var, var.detach())
    assert not carrier.training and carrier[1].momentum == model_a[1].momentum
    assert model_a[1].running_mean[0] == 5.0  # the caller's model is untouched

    out = interpolation.run(ctx, cfg.probe)
    assert out["bn_recomputed"]
    fixed = copy.deepcopy(model_a)
    fixed[1].running_mean.copy_(mean.detach())
    fixed[1].running_var.copy_(var.detach())
    batches = ctx.probe_batches(96)
    at0 = out["train_loss"][out["alphas"].index(0.0)]
    assert at0 == pytest.approx(evaluate(fixed, batches)["loss"], rel=1e-5)
    assert abs(at0 - evaluate(model_a, batches)["loss"]) > 1e-3  # stored statistics are not used


def test_recompute_without_batchnorm_changes_nothing(tmp_path):
    model_a, model_b = mlp_pair(tmp_path, seed_b=3)
    ctx, _ = _ctx(tmp_path, model_a, model_b)
    before = copy.deepcopy(model_a.state_dict())
    assert ctx.bn_batches(5) is None
    assert recompute_bn(model_a, ctx.probe_batches(96)) is False
    assert all(torch.equal(before[k], v) for k, v in model_a.state_dict().items())


def test_batchnorm_without_recompute_batches_is_refused(tmp_path):
    ctx, cfg = _ctx(tmp_path, _bn_cnn(0), _bn_cnn(1), "probe.bn_batches=0")
    with pytest.raises(ValueError, match="probe.bn_batches"):
        interpolation.run(ctx, cfg.probe)


@pytest.mark.parametrize(
    "own, partner", [("sgd", "momentum"), ("momentum", "adamw"), ("adamw", "sgd")]
)
def test_default_partner_follows_the_study_cycle(tmp_path, own, partner):
    cfg = compose_cfg(tmp_path, *TINY, "probe=interpolation", f"optimizer={own}")
    assert cfg.probe.other.optimizer == partner


def test_null_other_resolves_in_python_and_same_weights_are_refused(tmp_path):
    model_a, _ = mlp_pair(tmp_path, seed_b=3)
    calls = []
    ctx, cfg = _ctx(
        tmp_path,
        model_a,
        copy.deepcopy(model_a),
        "optimizer=adamw",
        "probe.other=null",
        calls=calls,
    )
    with pytest.raises(ValueError, match="same trained weights"):
        interpolation.run(ctx, cfg.probe)
    assert calls == [{"optimizer": "sgd"}]


def test_cli_writes_json_and_figure(tmp_path):
    job = run_probe_cli(
        tmp_path,
        "interpolation",
        "trainer.max_epochs=1",
        "probe.n_samples=64",
        "probe.test_samples=64",
        "probe.n_points=5",
    )
    scalars = {"barrier", "test_barrier", "acc_barrier", "loss_a", "loss_b"}
    rec = assert_probe_outputs(job, "interpolation", scalars, exact=False)
    assert rec["config"]["other"] == {"optimizer": "momentum"}
    # 5 points + 0 and 1
    assert rec["result"]["pair"] == "sgd-momentum" and len(rec["result"]["train_loss"]) == 7


def test_the_second_endpoint_is_the_cached_training_of_probe_other(tmp_path):
    """The CLI trains `probe.other` into the training cache; the curve's alpha = 1 end is that
    checkpoint, which a later job reuses instead of retraining."""
    from losslands.io import read_json
    from losslands.training import fit

    over = ("trainer.max_epochs=1", "probe.n_samples=64", "probe.test_samples=64",
            "probe.n_points=3", f"dirs.cache={tmp_path / 'cache'}")
    rec = read_json(run_probe_cli(tmp_path, "interpolation", *over) / "probes/interpolation.json")
    cfg_b = compose_cfg(tmp_path, *TINY, "trainer.max_epochs=1", "optimizer=momentum")
    trained = fit.train_or_reuse(cfg_b)
    assert not trained.trained_now  # the probe job trained it
    ctx = job_context(cfg_b, trained.model)
    own = evaluate(trained.model, ctx.split_batches("test", 64))
    result = rec["result"]
    at_b = result["alphas"].index(1.0)
    assert result["test_loss"][at_b] == pytest.approx(own["loss"], rel=2e-7)
    assert result["test_acc"][at_b] == own["acc"]
