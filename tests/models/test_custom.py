"""Your own model class through the config: ``model=custom model._target_=<import path>`` with
its constructor options, trained or loaded from ``weights=``, probed in eval mode."""

from __future__ import annotations

import pytest
import torch

from losslands.data import make_synthetic, normalize
from losslands.task import run
from losslands.training import fit
from tests.conftest import TINY, compose_cfg
from tests.models.nets import Net

CUSTOM = ("model=custom", "model._target_=tests.models.nets.Net", "+model.width=4")


def test_custom_target_builds_the_class_with_its_options(tmp_path):
    cfg = compose_cfg(tmp_path, *TINY, *CUSTOM)
    model = fit.build_model(cfg)
    assert isinstance(model, Net) and model.width == 4 and model.head.out_features == 10
    assert fit.model_name(cfg) == "Net"
    named = compose_cfg(tmp_path, *TINY, *CUSTOM, "model.name=mynet")
    assert fit.model_name(named) == "mynet"


def test_custom_target_without_a_class_is_refused(tmp_path):
    from losslands.config import InvalidConfig

    with pytest.raises(InvalidConfig, match="model._target_ must name an nn.Module class"):
        run(compose_cfg(tmp_path, *TINY, "model=custom"))


def test_a_custom_model_trains_and_is_probed(tmp_path):
    record = run(compose_cfg(tmp_path, *TINY, *CUSTOM, "trainer.max_epochs=1"))
    assert record["status"] == "completed" and record["model"] == "Net"
    assert 0.0 <= record["scalars"]["test_acc"] <= 1.0


def test_custom_model_weights_with_batchnorm_are_probed_in_eval_mode(tmp_path):
    """BatchNorm uses its stored running statistics, not the batch's: the accuracy is the
    eval-mode one the weights' owner would measure."""
    torch.manual_seed(0)
    net = Net(width=4)
    net.bn.running_mean.uniform_(-2, 2)
    net.bn.running_var.uniform_(0.5, 3)
    torch.save({"net": net.state_dict(), "epoch": 9}, tmp_path / "net.pt")
    _, _, test_x, test_y = make_synthetic(256, 128)
    with torch.no_grad():
        logits_eval = net.eval()(normalize(test_x))
        logits_train = net.train()(normalize(test_x))
    assert not torch.allclose(logits_eval, logits_train)
    expected = (logits_eval.argmax(1) == test_y).float().mean().item()
    record = run(compose_cfg(tmp_path, *TINY, *CUSTOM, f"weights={tmp_path / 'net.pt'}"))
    assert record["scalars"]["test_acc"] == pytest.approx(expected, abs=1e-9)


def test_the_data_sets_the_number_of_classes(tmp_path):
    """Built-in models read ``num_classes`` from the data (CIFAR-100: 100), and so does the
    training metric; without one in the data it stays 10."""
    cfg = compose_cfg(tmp_path, "data=cifar100", "model=small_cnn")
    assert fit.build_model(cfg).fc.out_features == 100 and fit.num_classes(cfg) == 100
    assert fit.num_classes(compose_cfg(tmp_path, *TINY)) == 10
    custom = compose_cfg(tmp_path, "data=cifar100", *CUSTOM)
    assert fit.num_classes(custom) == 100
