"""A killed probe resumes: finished pieces (lanczos subsets, noise estimates) are not recomputed,
and the resumed result equals an uninterrupted run's."""

from __future__ import annotations

import math

import pytest

from losslands.probes import lanczos, noise
from losslands.probes.base import PartialResults
from losslands.probes.runner import run_probe
from tests.probes.tiny_curvature import context, probe_cfg, tiny_cnn

pytestmark = pytest.mark.usefixtures("one_thread")

CASES = {
    # probe module, the function computing one piece, config, pieces in an uninterrupted run
    "lanczos": (lanczos, "_one_repeat", dict(n_samples=40, repeats=3, k=2, max_iters=30, tol=1e-3,
                                             hutchinson_samples=2, slq_vectors=1, slq_iters=5), 3),
    "noise": (noise, "estimate", dict(n_samples=40, repeats=2, ns=[8, 40], max_iters=30, tol=1e-3,
                                      chunk_size=16), 3),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_killed_probe_resumes_at_the_next_piece(name, tmp_path, monkeypatch):
    module, fn_name, overrides, pieces = CASES[name]
    ctx = context(tiny_cnn())
    ctx.model_name = "tiny_cnn"
    cfg = probe_cfg(name, **overrides)
    real = getattr(module, fn_name)
    calls = []

    def killed_at_the_second_piece(*args):
        if len(calls) == 1:
            raise KeyboardInterrupt  # what a killed job looks like from inside
        calls.append(args[2:])
        return real(*args)

    monkeypatch.setattr(module, fn_name, killed_at_the_second_piece)
    with pytest.raises(KeyboardInterrupt):
        run_probe(name, ctx, cfg, tmp_path / "resumed", pkey="key")
    partial = tmp_path / "resumed" / "probes" / f"{name}.partial.json"
    assert len(calls) == 1 and partial.exists()

    def counted(*args):
        calls.append(args[2:])
        return real(*args)

    monkeypatch.setattr(module, fn_name, counted)
    resumed = run_probe(name, ctx, cfg, tmp_path / "resumed", pkey="key")["result"]
    assert len(calls) == pieces and calls[0] not in calls[1:]  # the first piece ran once
    assert not partial.exists()
    fresh = run_probe(name, ctx, cfg, tmp_path / "fresh", pkey="key")["result"]
    assert len(calls) == 2 * pieces
    assert _without_seconds(resumed) == _without_seconds(fresh)


def _without_seconds(obj):
    if isinstance(obj, dict):
        return {k: _without_seconds(v) for k, v in obj.items() if k not in ("seconds", "seconds_by_output")}
    if isinstance(obj, list):
        return [_without_seconds(v) for v in obj]
    return obj


def test_non_finite_values_survive_the_partial_file(tmp_path):
    path = tmp_path / "p.partial.json"
    PartialResults(path, "k").put("x", {"nan": math.nan, "inf": math.inf})
    back = PartialResults(path, "k").get("x")
    assert math.isnan(back["nan"]) and back["inf"] == math.inf
