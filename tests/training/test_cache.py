"""The training key: every field that changes the trained weights (or the cached summary)
changes it; paths, loggers, probes and display options leave it alone."""

from __future__ import annotations

import pytest
import torch

from losslands.training.cache import training_config, training_hash
from tests.conftest import TINY, compose_cfg

# Overrides on top of TINY (synthetic data, mlp, sgd, trainer=cpu), grouped like conf/; an
# entry (overrides, baseline) compares against TINY + baseline instead of TINY.
CHANGES_WEIGHTS = [
    # the seed initialises the model; data.seed (= ${seed} by default) orders the batches
    ("seed=7", "data.seed=42"),
    ("data.seed=7",),
    ("seed=7",),
    # model: the architecture and every constructor argument
    ("model=small_cnn",),
    ("model.hidden=16",),
    ("model.depth=2",),
    ("model.in_features=3000",),
    ("model.num_classes=9",),
    # optimizer: the class and every hyper-parameter
    ("optimizer=momentum",),
    ("optimizer=adamw",),
    ("optimizer=adam",),
    ("optimizer.lr=0.02",),
    ("optimizer.momentum=0.5",),
    ("optimizer.weight_decay=0.0",),
    (("optimizer=adamw", "optimizer.betas=[0.8,0.99]"), ("optimizer=adamw",)),
    (("+optimizer.nesterov=true", "optimizer.momentum=0.9"), ("optimizer.momentum=0.9",)),
    # data: what is trained on, in which order and batches, with which augmentation
    ("data.synthetic=false",),
    ("data.synthetic_train=200",),
    ("data.batch_size=32",),
    ("data.augment=false",),
    ("data.train_subset=100",),
    ("data.subset_seed=3",),
    # data that only changes the validation numbers the cached summary holds
    ("data.synthetic_test=64",),
    ("data.val_subset=64",),
    # trainer: how long, in which precision, on which device, with which step rules
    ("trainer.max_epochs=3",),
    ("trainer.precision=bf16-mixed",),
    ("trainer=gpu",),
    ("trainer.accelerator=gpu",),
    ("trainer.devices=2",),
    ("trainer.deterministic=false",),
    ("+trainer.gradient_clip_val=1.0",),
    (("+trainer.gradient_clip_val=1.0", "+trainer.gradient_clip_algorithm=value"),
     ("+trainer.gradient_clip_val=1.0",)),
    ("+trainer.accumulate_grad_batches=2",),
    ("+trainer.max_steps=3",),
    ("+trainer.limit_train_batches=2",),
    ("+trainer.benchmark=true",),
    # training-time probes fill the cached summary's probe_history
    ("callbacks=curvature",),
    (("callbacks=curvature", "callbacks.curvature.every_n_epochs=2"), ("callbacks=curvature",)),
]

LEAVES_KEY = [
    ("logger=csv",),
    ("logger=wandb",),
    ("probe=lanczos",),
    ("probe=noise", "probe.n_samples=64"),
    ("probe=interpolation", "probe.other.optimizer=adamw"),
    ("threads=1",),
    ("tags=[a,b]",),
    ("train.force=true",),
    ("data.eval_batch_size=7",),
    ("data.probe_seed=9",),
    ("data.download=true",),
    ("data.root=/somewhere/else",),
    ("trainer.enable_progress_bar=true",),
    ("trainer.log_every_n_steps=5",),
    ("trainer.num_sanity_val_steps=2",),
    ("+trainer.enable_model_summary=false",),
    ("+trainer.gradient_clip_val=null",),
    ("callbacks=none",),
]


def _key(tmp_path, *overrides: str) -> str:
    return training_hash(training_config(compose_cfg(tmp_path, *TINY, *overrides)))


def _pairs(entries):
    for e in entries:
        overrides, baseline = (e, ()) if isinstance(e[0], str) else e
        yield pytest.param(overrides, baseline, id=" ".join(overrides))


@pytest.mark.parametrize("overrides, baseline", _pairs(CHANGES_WEIGHTS))
def test_fields_that_change_the_weights_change_the_key(tmp_path, overrides, baseline):
    assert _key(tmp_path, *overrides) != _key(tmp_path, *baseline)


@pytest.mark.parametrize("overrides", LEAVES_KEY, ids=" ".join)
def test_fields_that_do_not_change_the_weights_leave_the_key(tmp_path, overrides):
    assert _key(tmp_path, *overrides) == _key(tmp_path)


def test_paths_leave_the_key(tmp_path):
    assert _key(tmp_path / "a") == _key(tmp_path / "b", "dirs.output=/x", "dirs.data=/y")


def test_auto_accelerator_is_keyed_by_the_device_it_selects(tmp_path, monkeypatch):
    """Weights trained on a GPU differ from CPU ones: ``auto`` must not hide which it was."""
    cpu = _key(tmp_path, "trainer.accelerator=cpu")
    gpu = _key(tmp_path, "trainer.accelerator=gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert _key(tmp_path, "trainer.accelerator=auto") == cpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _key(tmp_path, "trainer.accelerator=auto") == gpu == _key(tmp_path, "trainer.accelerator=cuda")


def test_training_hash_is_short_stable_and_order_free():
    from losslands.training.cache import training_hash

    a = training_hash({"seed": 1, "model": {"name": "mlp", "hidden": 32}})
    b = training_hash({"model": {"hidden": 32, "name": "mlp"}, "seed": 1})
    assert a == b and len(a) == 16 and int(a, 16) >= 0
    assert training_hash({"seed": 2, "model": {"name": "mlp", "hidden": 32}}) != a


def _entry(tmp_path, summary_text: str | None, model: bool = True):
    import json

    from losslands.training.cache import TrainingCache

    cache = TrainingCache(tmp_path / "cache")
    folder = cache.path("0123456789abcdef")
    folder.mkdir(parents=True)
    if summary_text is not None:
        (folder / "train_summary.json").write_text(summary_text)
    if model:
        (folder / "model.pt").write_bytes(b"weights")
    return cache, folder, json


def test_cache_summary_and_completeness(tmp_path):
    from losslands.training.cache import TrainingCache

    cache, folder, json = _entry(tmp_path, '{"status": "completed", "hash": "0123456789abcdef"}')
    assert cache.summary("0123456789abcdef")["status"] == "completed"
    assert cache.is_complete("0123456789abcdef")
    (folder / "model.pt").unlink()
    assert not cache.is_complete("0123456789abcdef")  # no weights
    (folder / "model.pt").write_bytes(b"weights")
    (folder / "train_summary.json").write_text(json.dumps({"status": "running"}))
    assert not cache.is_complete("0123456789abcdef")
    assert cache.summary("fedcba9876543210") is None and not cache.is_complete("fedcba9876543210")
    assert cache.lock("0123456789abcdef").lock_file == str(tmp_path / "cache" / "0123456789abcdef.lock")
    nested = TrainingCache(tmp_path / "new" / "cache")  # created with its parents on first lock
    lock = nested.lock("0123456789abcdef", timeout=0.5)
    assert lock.timeout == 0.5 and (tmp_path / "new" / "cache").is_dir()
    with lock:
        assert lock.is_locked


@pytest.mark.parametrize("content", [b'{"status": "compl', b"[1, 2]", b"\xff\xfe{}"], ids=["truncated", "list", "binary"])
def test_unreadable_cache_summary_is_set_aside(tmp_path, caplog, content):
    import logging

    cache, folder, _ = _entry(tmp_path, "")
    (folder / "train_summary.json").write_bytes(content)
    with caplog.at_level(logging.WARNING):
        assert cache.summary("0123456789abcdef") is None
    assert not (folder / "train_summary.json").exists()
    assert (folder / "train_summary.json.corrupt").read_bytes() == content
    [message] = [r.getMessage() for r in caplog.records]
    assert str(folder / "train_summary.json") in message and "train_summary.json.corrupt" in message
    assert message.startswith("unreadable cached file")
    if content == b"[1, 2]":
        assert "ValueError: holds a list, not a JSON object" in message
    assert not cache.is_complete("0123456789abcdef")


def test_describe_error_and_set_aside(tmp_path, caplog):
    import pickle

    from losslands.training.cache import describe_error, set_aside

    assert describe_error(ValueError("first line\nsecond line")) == "ValueError: first line"
    assert describe_error(KeyError()) == "KeyError"
    torch_message = ("Weights only load failed. This file can still be loaded, to do so you have two "
                     "options\n(1) Re-running `torch.load` with `weights_only` set to `False` ...")
    assert describe_error(pickle.UnpicklingError(torch_message)) == "UnpicklingError: not a file of plain tensors"
    hint = pickle.UnpicklingError("Unsupported global: rerun with weights_only=False if you trust it")
    assert describe_error(hint) == "UnpicklingError: not a file of plain tensors"
    f = tmp_path / "model.pt"
    f.write_bytes(b"garbage")
    assert set_aside(f, EOFError("truncated")) == tmp_path / "model.pt.corrupt"
    assert not f.exists() and (tmp_path / "model.pt.corrupt").read_bytes() == b"garbage"
    # a file another job already set aside is not an error
    assert set_aside(f, EOFError("truncated")) == tmp_path / "model.pt.corrupt"
    assert all(r.getMessage().startswith("unreadable cached file") and "EOFError: truncated" in r.getMessage()
               for r in caplog.records)


def test_external_weights_are_keyed_by_file_content_only_when_set(tmp_path):
    """``weights`` enters the key only when set, as the sha256 of the file's bytes: a copy
    elsewhere keys the same, one changed byte keys differently, and a rewrite is hashed again."""
    import hashlib
    import os

    from losslands.training.cache import file_sha256

    a, b = tmp_path / "a.pt", tmp_path / "copy" / "b.pt"
    b.parent.mkdir()
    a.write_bytes(b"weights v1")
    b.write_bytes(b"weights v1")
    plain = training_config(compose_cfg(tmp_path, *TINY))
    assert "weights" not in plain and training_hash(plain) == _key(tmp_path, "weights=null")
    with_a = training_config(compose_cfg(tmp_path, *TINY, f"weights={a}"))
    assert with_a == {**plain, "weights": {"sha256": hashlib.sha256(b"weights v1").hexdigest()}}
    assert _key(tmp_path, f"weights={a}") == _key(tmp_path, f"weights={b}") != _key(tmp_path)
    assert _key(tmp_path, f"weights={a}", "weights_trust=true") == _key(tmp_path, f"weights={a}")
    a.write_bytes(b"weights v2")
    os.utime(a, ns=(1, 1))  # a rewrite with another size or mtime is hashed again
    assert file_sha256(a) == hashlib.sha256(b"weights v2").hexdigest()
    assert _key(tmp_path, f"weights={a}") != _key(tmp_path, f"weights={b}")


def test_a_data_file_is_keyed_by_its_content_not_its_path(tmp_path):
    import hashlib

    f = tmp_path / "mine.npz"
    f.write_bytes(b"tensors")

    def data_key(path):
        cfg = compose_cfg(tmp_path, "data=tensors", f"data.path={path}", "data.num_classes=3")
        return training_config(cfg)["data"]

    data = data_key(f)
    assert "path" not in data and data["sha256"] == hashlib.sha256(b"tensors").hexdigest()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "same.npz").write_bytes(b"tensors")
    assert data_key(tmp_path / "sub" / "same.npz") == data
