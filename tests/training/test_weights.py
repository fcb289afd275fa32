"""External weights (``weights=PATH``): the file layouts accepted, prefix stripping, one clear
error for a mismatch, refusal of pickles that would run code, the training key, the summary, and
``probe=eval`` reproducing the accuracy a plain training script measured."""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import pickle

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from losslands.data import make_synthetic, normalize
from losslands.io import read_json
from losslands.models import MLP, SmallCNN
from losslands.safe_load import UnsafeFileError, load_torch, pickle_globals
from losslands.task import run
from losslands.training import fit
from losslands.training.cache import training_config, training_hash
from losslands.training.weights import WeightsError, load_weights
from tests.conftest import TINY, compose_cfg, run_cli
from tests.models.nets import Net

# The done-when job: the reference CNN on 64 + 64 synthetic images, scored by probe=eval.
N_TRAIN, N_TEST = 64, 64
CNN_JOB = (
    "data=synthetic", f"data.synthetic_train={N_TRAIN}", f"data.synthetic_test={N_TEST}",
    "data.eval_batch_size=64", "model=small_cnn", "trainer=cpu", "logger=none", "probe=eval",
)


class Evil:
    """Unpickling this runs a shell command that creates ``marker``."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def script_checkpoint(path) -> dict[str, float]:
    """What a plain training script saves: a few SGD steps of the reference CNN on the job's
    synthetic data, then a dict of model and optimizer state, its config, the epoch and NumPy RNG
    states; returns the accuracies the script measured itself (eval mode, whole splits)."""
    train_x, train_y, test_x, test_y = make_synthetic(N_TRAIN, N_TEST)
    torch.manual_seed(3)
    model = SmallCNN()
    optim = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for step in range(3):
        idx = slice(32 * (step % 2), 32 * (step % 2) + 32)
        optim.zero_grad()
        F.cross_entropy(model(normalize(train_x[idx])), train_y[idx]).backward()
        optim.step()
    model.eval()
    with torch.no_grad():
        acc = {split: (model(normalize(x)).argmax(1) == y).float().mean().item()
               for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y))}
    np.random.seed(5)
    torch.save({
        "model": model.state_dict(), "optim": optim.state_dict(),
        "cfg": {"arch": "small_cnn", "lr": 0.05, "milestones": [1, 2]}, "epoch": 3,
        "np_rng": np.random.get_state(), "rng": np.random.default_rng(1).bit_generator.state,
        "torch_rng": torch.get_rng_state(), "acc": np.float32(acc["test"]),
        "curve": np.linspace(0, 1, 4), "labels": np.array(["a", "b"]),
        "counts": np.arange(3, dtype=np.uint8),
    }, path)
    return acc


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


# ---- loading -------------------------------------------------------------------------------


def test_script_checkpoint_with_numpy_state_loads(tmp_path):
    path = tmp_path / "run.pt"
    script_checkpoint(path)
    model = SmallCNN()
    info = load_weights(model, path)
    saved = torch.load(path, weights_only=False)["model"]
    assert all(torch.equal(model.state_dict()[k], v) for k, v in saved.items())
    assert info.entry == "model" and info.prefix == "" and info.counters == {"epoch": 3}
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("entry", ["state_dict", "model_state_dict", "model", "net"])
def test_state_dict_is_found_under_each_key(tmp_path, entry):
    source = MLP(hidden=8)
    torch.save({entry: source.state_dict(), "optimizer": {"lr": 0.1}, "step": 7}, tmp_path / "w.pt")
    model = _fresh_mlp(hidden=8)
    info = load_weights(model, tmp_path / "w.pt")
    assert _same(model, source) and info.entry == entry and info.counters == {"step": 7}


def _fresh_mlp(hidden: int = 32) -> MLP:
    """An MLP initialised from another seed than any job's."""
    torch.manual_seed(123)
    return MLP(hidden=hidden)


def test_bare_state_dict(tmp_path):
    source = Net(width=4)
    torch.save(source.state_dict(), tmp_path / "bare.pt")
    model = Net(width=4)
    info = load_weights(model, tmp_path / "bare.pt")
    assert _same(model, source) and info.entry == "" and info.prefix == ""


@pytest.mark.parametrize("prefix", ["module.", "model.", "net.", "_orig_mod.", "model.module."])
def test_a_prefix_that_explains_the_mismatch_is_stripped_and_logged(tmp_path, caplog, prefix):
    source = Net(width=4)
    torch.save({f"{prefix}{k}": v for k, v in source.state_dict().items()}, tmp_path / "p.pt")
    model = Net(width=4)
    with caplog.at_level(logging.INFO, logger="losslands.training.weights"):
        info = load_weights(model, tmp_path / "p.pt")
    assert _same(model, source) and info.prefix == prefix
    assert f"stripped the key prefix {prefix!r}" in caplog.text


def test_entries_outside_the_prefix_are_left_out_and_named(tmp_path, caplog):
    """A LightningModule holding the network as ``model`` and a loss with a buffer."""
    source = Net(width=4)
    state = {f"model.{k}": v for k, v in source.state_dict().items()}
    state["loss_fn.weight"] = torch.ones(10)
    torch.save({"state_dict": state, "epoch": 2}, tmp_path / "l.ckpt")
    model = Net(width=4)
    with caplog.at_level(logging.INFO, logger="losslands.training.weights"):
        info = load_weights(model, tmp_path / "l.ckpt")
    assert _same(model, source) and info.ignored == ["loss_fn.weight"]
    assert "loss_fn.weight" in caplog.text


def test_lightning_checkpoint_of_a_training_loads(tmp_path):
    """The ``last.ckpt`` Lightning wrote for a cached training holds the same weights as its
    ``model.pt``, under the LightningModule's ``model.`` attribute."""
    trained = fit.train_or_reuse(compose_cfg(tmp_path, *TINY))
    ckpt = trained.path / "last.ckpt"
    assert "pytorch-lightning_version" in torch.load(ckpt, weights_only=True)
    model = fit.build_model(compose_cfg(tmp_path, *TINY, "seed=9"))
    info = load_weights(model, ckpt)
    assert info.entry == "state_dict" and info.prefix == "model."
    assert _same(model, trained.model)


def test_missing_and_unexpected_keys_give_one_error_with_the_model_config(tmp_path):
    torch.save({"model": SmallCNN().state_dict()}, tmp_path / "cnn.pt")
    cfg = compose_cfg(tmp_path, *TINY, f"weights={tmp_path / 'cnn.pt'}")
    with pytest.raises(WeightsError) as err:
        fit.train_or_reuse(cfg)
    msg = str(err.value)
    assert "missing from" in msg and "layers.1.weight" in msg  # the MLP's first layer
    assert "unexpected in" in msg and "conv1.weight" in msg and "fc.bias" in msg
    assert "losslands.models.mlp.MLP" in msg and "hidden: 32" in msg


def test_two_copies_of_the_model_are_not_resolved_by_a_guess(tmp_path):
    state = Net(width=4).state_dict()
    torch.save({**{f"model.{k}": v for k, v in state.items()},
                **{f"ema.{k}": v for k, v in state.items()}}, tmp_path / "two.pt")
    with pytest.raises(WeightsError, match=r"several prefixes \(ema\., model\.\)"):
        load_weights(Net(width=4), tmp_path / "two.pt")


def test_long_key_lists_are_cut_to_the_first_few(tmp_path):
    state = {f"block{i}.weight": torch.zeros(1) for i in range(12)}
    torch.save(state, tmp_path / "many.pt")
    with pytest.raises(WeightsError, match=r"\(12 in all\)"):
        load_weights(Net(width=4), tmp_path / "many.pt")


def test_shape_mismatch_names_the_entries(tmp_path):
    torch.save(SmallCNN(num_classes=5).state_dict(), tmp_path / "five.pt")
    with pytest.raises(WeightsError, match=r"fc\.weight \(5, 16384\) vs \(10, 16384\)"):
        load_weights(SmallCNN(), tmp_path / "five.pt", expected_model="{num_classes: 10}")


def test_a_file_without_a_state_dict_lists_what_it_holds(tmp_path):
    torch.save({"weights_here": [1, 2], "epoch": 3}, tmp_path / "odd.pt")
    with pytest.raises(WeightsError, match="'weights_here', 'epoch'.*'state_dict', 'model_st"):
        load_weights(SmallCNN(), tmp_path / "odd.pt")


# ---- safety ----------------------------------------------------------------------------------


@pytest.mark.filterwarnings("ignore:Detected pickle protocol 5")
@pytest.mark.parametrize("how", ["torch.save", "pickle protocol 5", "legacy torch.save"])
def test_a_pickle_that_would_run_code_is_refused(tmp_path, how):
    marker = tmp_path / "pwned"
    obj = {"model": Net(width=4).state_dict(), "extra": Evil(marker)}
    path = tmp_path / "evil.pt"
    if how == "torch.save":
        torch.save(obj, path)
    elif how == "legacy torch.save":
        torch.save(obj, path, _use_new_zipfile_serialization=False)
    else:
        with open(path, "wb") as f:
            pickle.dump(obj, f, protocol=5)
    system = f"{os.system.__module__}.system"
    assert system in pickle_globals(path)
    with pytest.raises(UnsafeFileError) as err:
        load_weights(Net(width=4), path)
    assert system in str(err.value) and "weights_trust=true" in str(err.value)
    assert system in err.value.globals
    assert not marker.exists()


def test_the_job_refuses_a_tampered_file_before_running_it(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"model": SmallCNN().state_dict(), "x": Evil(marker)}, tmp_path / "evil.pt")
    cfg = compose_cfg(tmp_path, *CNN_JOB, f"weights={tmp_path / 'evil.pt'}")
    with pytest.raises(UnsafeFileError, match="system"):
        run(cfg)
    assert not marker.exists() and not (tmp_path / "out" / "probes" / "eval.json").exists()


def test_weights_trust_opts_in_to_other_globals(tmp_path):
    """An ``argparse.Namespace`` config is refused by default and loads when trusted."""
    source = Net(width=4)
    torch.save({"net": source.state_dict(), "args": argparse.Namespace(lr=0.1)}, tmp_path / "a.pt")
    with pytest.raises(UnsafeFileError, match="argparse.Namespace"):
        load_weights(Net(width=4), tmp_path / "a.pt")
    model = Net(width=4)
    load_weights(model, tmp_path / "a.pt", trust=True)
    assert _same(model, source)


def test_object_arrays_are_refused(tmp_path):
    torch.save({"model": Net(width=4).state_dict(), "o": np.array([1, "a"], dtype=object)},
               tmp_path / "obj.pt")
    with pytest.raises(UnsafeFileError, match="ObjectDType"):
        load_torch(tmp_path / "obj.pt")


def test_garbage_is_not_a_torch_file(tmp_path):
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint at all")
    with pytest.raises(ValueError, match="cannot read .*junk.pt|not a file of plain tensors"):
        load_weights(Net(width=4), tmp_path / "junk.pt")


# ---- the job -----------------------------------------------------------------------------------


def test_missing_weights_file_is_refused_before_data_loading(tmp_path):
    from losslands.config import InvalidConfig

    cfg = compose_cfg(tmp_path, *CNN_JOB, f"weights={tmp_path / 'nope.pt'}")
    with pytest.raises(InvalidConfig, match="no such file"):
        run(cfg)


def test_eval_reproduces_the_scripts_accuracy(tmp_path):
    """Done-when: a plain script's checkpoint (model, optim, cfg, epoch, NumPy RNG states) loads
    with ``weights=`` and ``probe=eval`` gives the accuracies the script measured."""
    path = tmp_path / "script.pt"
    acc = script_checkpoint(path)
    cfg = compose_cfg(tmp_path, *CNN_JOB, f"weights={path}")
    record = run(cfg)
    assert record["status"] == "completed"
    assert record["scalars"]["test_acc"] == pytest.approx(acc["test"], abs=1e-9)
    assert record["scalars"]["train_acc"] == pytest.approx(acc["train"], abs=1e-9)
    summary = read_json(tmp_path / "out" / "train_summary.json")
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert summary["status"] == "completed" and summary["source"] == "external"
    assert summary["weights"]["path"] == str(path.resolve()) and summary["weights"]["sha256"] == sha
    assert summary["weights"]["epoch"] == 3 and summary["weights"]["entry"] == "model"
    assert record["train_hash"] == summary["hash"] == training_hash(training_config(cfg))
    assert not (tmp_path / "cache").exists()  # nothing trained, nothing cached
    assert run(cfg)["probe_key"] == record["probe_key"]  # the result stays cached


def test_cli_eval_of_script_weights(tmp_path):
    """The same through ``python -m losslands weights=...``."""
    path = tmp_path / "script.pt"
    acc = script_checkpoint(path)
    run_cli(*CNN_JOB, f"weights={path}", "hydra.run.dir=job", cwd=tmp_path)
    record = read_json(tmp_path / "job" / "probes" / "eval.json")
    assert record["scalars"]["test_acc"] == pytest.approx(acc["test"], abs=1e-9)
    assert read_json(tmp_path / "job" / "train_summary.json")["source"] == "external"


def test_pairwise_probe_takes_other_weights(tmp_path):
    """``+probe.other.weights=FILE`` names the second endpoint by file; its end of the line
    has the file's accuracy."""
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    torch.save(MLP(hidden=32).state_dict(), a)
    other = _fresh_mlp()
    torch.save({"model": other.state_dict()}, b)
    cfg = compose_cfg(tmp_path, *TINY, f"weights={a}", "probe=interpolation", "probe.n_points=2",
                      "probe.lo=0.0", "probe.hi=1.0", "probe.n_samples=64", "probe.bn_batches=0",
                      f"+probe.other.weights={b}")
    record = run(cfg)
    assert record["status"] == "completed" and record["result"]["other"] == "b"
    _, _, test_x, test_y = make_synthetic(256, 128)
    with torch.no_grad():
        expected = (other.eval()(normalize(test_x)).argmax(1) == test_y).float().mean().item()
    assert record["result"]["test_acc_b"] == pytest.approx(expected, abs=1e-9)
