"""probe=eval: full-split loss and accuracy against a hand-written loop."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from losslands.probes import eval as probe
from losslands.probes.base import make_config
from tests.conftest import TINY, compose_cfg
from tests.probes.tiny_jobs import job_context


def test_loss_and_accuracy_equal_a_hand_loop(tmp_path):
    ctx = job_context(compose_cfg(tmp_path, *TINY))
    out = probe.run(ctx, make_config("eval", {"batch_size": 100}))
    for split in ("train", "test"):
        x, y = ctx.data.split(split)
        x = (x.float() / 255 - torch.tensor([0.4914, 0.4822, 0.4465]).view(3, 1, 1)) / torch.tensor(
            [0.2470, 0.2435, 0.2616]
        ).view(3, 1, 1)
        with torch.no_grad():
            logits = ctx.model(x)
        assert out[split]["n"] == len(y)
        assert out[split]["acc"] == float((logits.argmax(1) == y).double().mean())
        assert out[split]["loss"] == pytest.approx(float(nn.functional.cross_entropy(logits, y)), rel=1e-5)
    s = probe.scalars(out)
    assert s["generalization_gap"] == out["train"]["acc"] - out["test"]["acc"]
