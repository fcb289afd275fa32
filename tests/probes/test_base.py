"""The probe protocol: import hygiene, typed configs, the registry and the notebook API."""

from __future__ import annotations

import dataclasses
import subprocess
import sys

import pytest
import torch
from hydra.errors import ConfigCompositionException
from torch import nn

from losslands.config import conf_dir
from losslands.curvature import DenseOperator, lanczos
from losslands.probes import ConfigError, available_probes, load_probe, make_config, run
from tests.conftest import compose_cfg
from tests.probes.tiny_curvature import dense_hessian, tiny_cnn


def test_probes_import_without_the_cli_stack():
    """Every probe, the cores, models and data import with no Hydra, OmegaConf, Lightning or W&B."""
    code = (
        "import importlib, sys\n"
        "from losslands.probes import available_probes\n"
        "mods = ['losslands.probes.' + n for n in available_probes()] + ['losslands.curvature',"
        " 'losslands.paths', 'losslands.subspace', 'losslands.models', 'losslands.data',"
        " 'losslands.evaluate', 'losslands.batchnorm', 'losslands.stats']\n"
        "[importlib.import_module(m) for m in mods]\n"
        "stack = ('hydra', 'omegaconf', 'lightning', 'pytorch_lightning', 'lightning_fabric',"
        " 'wandb', 'torchmetrics')\n"
        "print(sorted({k.split('.')[0] for k in sys.modules if k.split('.')[0] in stack}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_every_probe_has_config_info_yaml_and_test():
    names = available_probes()
    assert "base" not in names and "runner" not in names and not any(n.startswith("_") for n in names)
    tests = conf_dir().parent / "tests" / "probes"
    for name in names:
        mod = load_probe(name)
        assert (conf_dir() / "probe" / f"{name}.yaml").exists()
        assert (tests / f"test_{name}.py").exists()
        assert set(mod.INFO.table) <= set(mod.INFO.scalars), name
        assert mod.Config().name == name


@pytest.mark.parametrize("name", available_probes())
def test_yaml_defaults_equal_the_config_defaults(name, tmp_path):
    """conf/probe/<name>.yaml composes against the typed config and holds the same options."""
    composed = compose_cfg(tmp_path, f"probe={name}", "optimizer=sgd").probe
    from omegaconf import OmegaConf

    options = OmegaConf.to_container(composed, resolve=True)
    cfg = make_config(name, options)
    assert set(options) == {f.name for f in dataclasses.fields(cfg)}


def test_bad_values_name_the_key_and_range():
    with pytest.raises(ConfigError, match=r"probe.repeats=0 must be an integer >= 1"):
        make_config("lanczos", {"repeats": 0})
    with pytest.raises(ConfigError, match=r"no option\(s\) \['n_sample'\]"):
        make_config("lanczos", {"n_sample": 5})
    with pytest.raises(ConfigError, match="probe.projection='gauss' must be one of"):
        make_config("intrinsic_dim", {"projection": "gauss"})
    with pytest.raises(ValueError, match="unknown probe 'base'"):
        load_probe("base")


def test_a_mistyped_value_fails_at_composition(tmp_path):
    with pytest.raises(ConfigCompositionException):
        compose_cfg(tmp_path, "probe=lanczos", "probe.k=ten")


def test_notebook_api_on_a_user_model_matches_the_dense_spectrum():
    """`losslands.probes.run` on a model and tensors of your own: no Hydra, no Lightning, the
    same record the CLI writes, and the numbers of a dense float64 Hessian."""
    model = tiny_cnn()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, 32, 32, generator=g)
    y = torch.randint(0, 10, (64,), generator=g)
    rec = run("lanczos", model, train=(x, y), n_samples=32, repeats=2, max_repeats=2, k=3, max_iters=150,
              tol=1e-8, hutchinson_samples=4, slq_vectors=2, slq_iters=10, chunk_size=None,
              certify_iters=40)
    assert rec["status"] == "completed" and rec["probe"] == "lanczos"
    assert rec["config"]["n_samples"] == 32 and set(rec["scalars"]) >= {"lambda_max", "trace"}
    tops = []
    for r in rec["result"]["per_repeat"]:
        xs, ys = _subset(x, y, 32, r["index"])
        truth = torch.linalg.eigvalsh(dense_hessian(model, xs, ys))
        assert r["top"] == pytest.approx(truth[-3:].flip(0).tolist(), rel=1e-5)
        tops.append(float(truth[-1]))
    assert rec["result"]["lambda_max"] == pytest.approx(sum(tops) / 2, rel=1e-5)


def _subset(x, y, n, index, probe_seed=1234):
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(probe_seed))
    idx = perm[index * n : (index + 1) * n]
    return x[idx], y[idx]


def test_notebook_api_refuses_bad_options_before_work():
    with pytest.raises(ConfigError, match="probe.k"):
        run("lanczos", nn.Linear(4, 3), train=(torch.randn(8, 4), torch.zeros(8, dtype=torch.long)), k=0)


def test_dense_operator_protocol_is_exported():
    from losslands.curvature import Operator

    op = DenseOperator(torch.diag(torch.tensor([3.0, 1.0, -2.0], dtype=torch.float64)))
    assert isinstance(op.dim, int) and hasattr(Operator, "matvec")
    assert lanczos(op, 1, max_iters=3).top[0] == pytest.approx(3.0)


def test_probes_run_without_tf32_and_restore_the_flags(monkeypatch):
    """cuDNN's TF32 default perturbs curvature products ~1e-3 relative on a GPU: a probe sees
    TF32 off, also when it fails, and the caller's settings come back."""
    import types

    from losslands.probes import runner

    seen = []

    def fake_run(ctx, cfg):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        if len(seen) == 2:
            raise RuntimeError("boom")
        return {}

    monkeypatch.setattr(runner, "load_probe", lambda name: types.SimpleNamespace(run=fake_run))
    ctx = types.SimpleNamespace(train_key="k", optimizer_name="o", seed=0, model_name="m", shard=None,
                                device=torch.device("cpu"), load_other=None, others=[])
    cfg = types.SimpleNamespace(to_dict=lambda: {})
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    try:  # torch's flags are module properties that monkeypatch cannot swap
        torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
        runner.run_probe("fake", ctx, cfg)
        with pytest.raises(RuntimeError, match="boom"):
            runner.run_probe("fake", ctx, cfg)
        assert seen == [(False, False), (False, False)]
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_a_probes_seconds_exclude_loading_or_training_its_second_model(monkeypatch):
    """A pairwise probe whose partner is not cached trains it inside the job: that time goes to
    ``other_seconds``, not to the probe's ``seconds`` (the training has its own row)."""
    import types

    from losslands.probes import runner

    clock = [0.0]
    monkeypatch.setattr(runner, "time", types.SimpleNamespace(perf_counter=lambda: clock[0]))

    def load_other(overrides):
        clock[0] += 900.0  # a training
        return "model"

    def fake_run(ctx, cfg):
        clock[0] += 50.0
        assert ctx.load_other({"seed": 1}) == "model"
        clock[0] += 10.0
        if cfg.fail:
            raise RuntimeError("boom")
        return {}

    monkeypatch.setattr(runner, "load_probe", lambda name: types.SimpleNamespace(run=fake_run))
    partner = {"train_hash": "h", "final": {"val/acc": 0.5}}
    ctx = types.SimpleNamespace(train_key="k", optimizer_name="o", seed=0, model_name="m", shard=None,
                                device=torch.device("cpu"), load_other=load_other, others=[partner])
    rec = runner.run_probe("fake", ctx, types.SimpleNamespace(to_dict=lambda: {}, fail=False))
    assert (rec["seconds"], rec["other_seconds"]) == (60.0, 900.0)
    assert rec["others"] == [partner]
    assert ctx.load_other is load_other  # restored
    with pytest.raises(RuntimeError, match="boom"):
        runner.run_probe("fake", ctx, types.SimpleNamespace(to_dict=lambda: {}, fail=True))
    assert ctx.load_other is load_other


def test_the_job_context_records_which_training_load_other_returned(tmp_path):
    """A pairwise probe's record names its second model's training (key and final metrics), so
    the report can check it against that model's own jobs."""
    from losslands.task import probe_context
    from losslands.training import fit
    from losslands.training.fit import build_datamodule
    from tests.conftest import TINY

    cfg = compose_cfg(tmp_path, *TINY)
    trained = fit.train_or_reuse(cfg)
    ctx = probe_context(cfg, trained.model, build_datamodule(cfg), torch.device("cpu"), trained.key,
                        trained.summary)
    ctx.load_other({"seed": 7})
    partner = fit.train_or_reuse(compose_cfg(tmp_path, *TINY, "seed=7"))
    assert partner.key != trained.key
    assert ctx.others == [{"train_hash": partner.key, "final": partner.summary["final"]}]


def test_progress_bars_redraw_rarely_into_a_log_file(tmp_path):
    """A bar into a file or pipe is redrawn every LOG_INTERVAL s, not ten times a second."""
    import io

    from losslands.probes.base import LOG_INTERVAL, progress_interval

    class Terminal(io.StringIO):
        def isatty(self):
            return True

    assert LOG_INTERVAL >= 10
    with open(tmp_path / "log", "w") as f:
        assert progress_interval(f) == LOG_INTERVAL
    assert progress_interval(object()) == LOG_INTERVAL
    assert progress_interval(Terminal()) == 0.1
    # in Jupyter tqdm.auto's class derives from the notebook widget's, and stderr is no terminal
    from tqdm.notebook import tqdm as notebook_tqdm

    class AutoInJupyter(notebook_tqdm):
        pass

    assert progress_interval(object(), tqdm=AutoInJupyter) == 0.1
