"""Shared builders for the probe tests that run on composed job configs (not a test file):
the tiny MLP of ``TINY`` at two seeds, a small BatchNorm CNN, a quiet CPU :class:`ProbeContext`
around a model, and the straight line between two models interpolated by hand."""

from __future__ import annotations

import copy
from pathlib import Path

import torch
from omegaconf import DictConfig
from torch import nn

from losslands.evaluate import evaluate
from losslands.flat import get_flat, set_flat
from losslands.probes.base import ProbeContext
from losslands.task import probe_context
from losslands.training.fit import build_datamodule, build_model
from tests.conftest import TINY, compose_cfg


def mlp_pair(tmp_path: Path, seed_b: int) -> tuple[nn.Module, nn.Module]:
    """The ``TINY`` model at the default seed and at ``seed_b``, untrained, in eval mode."""
    model_a = build_model(compose_cfg(tmp_path, *TINY)).eval()
    return model_a, build_model(compose_cfg(tmp_path, *TINY, f"seed={seed_b}")).eval()


def conv_bn() -> nn.Module:
    """Conv(3->4, stride 4) - BatchNorm - ReLU - Linear on 32x32 images, seed 0, in eval mode.

    Its BatchNorm statistics are the initial ones (mean 0, variance 1), far from what the data
    produces, so recomputing them changes the loss.
    """
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, stride=4),
        nn.BatchNorm2d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 64, 10),
    ).eval()


def hand_line(model_a: nn.Module, model_b: nn.Module, ts, batches: list) -> list[dict[str, float]]:
    """``evaluate`` at ``(1 - t) theta_a + t theta_b`` for each ``t``, on a copy of ``model_a``
    whose parameters are set by hand (buffers, e.g. BatchNorm statistics, as stored)."""
    theta_a, theta_b = get_flat(model_a), get_flat(model_b)
    manual = copy.deepcopy(model_a)
    out = []
    for t in ts:
        set_flat(manual, (1 - t) * theta_a + t * theta_b)
        out.append(evaluate(manual, batches))
    return out


def job_context(
    cfg: DictConfig,
    model: nn.Module | None = None,
    *,
    other: nn.Module | None = None,
    calls: list | None = None,
    datamodule=None,
) -> ProbeContext:
    """A quiet CPU context for ``cfg`` around ``model`` (built from ``cfg`` when None).

    With ``other``, ``load_other`` returns it for any request, appending the request to
    ``calls`` when given; without, the context has no ``load_other``.
    """

    def load_other(overrides):
        if calls is not None:
            calls.append(dict(overrides))
        return other

    ctx = probe_context(
        cfg,
        (build_model(cfg) if model is None else model).eval(),
        build_datamodule(cfg) if datamodule is None else datamodule,
        torch.device("cpu"),
        train_key="",
        summary={},
    )
    ctx.load_other = None if other is None else load_other
    ctx.quiet = True
    return ctx
