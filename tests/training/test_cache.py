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
    ("callbacks=probes",),
    (("callbacks=probes", "callbacks.curvature.every_n_epochs=2"), ("callbacks=probes",)),
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
    assert _key(tmp_path / "a") == _key(tmp_path / "b", "paths.output=/x", "paths.data=/y")


def test_auto_accelerator_is_keyed_by_the_device_it_selects(tmp_path, monkeypatch):
    """Weights trained on a GPU differ from CPU ones: ``auto`` must not hide which it was."""
    cpu = _key(tmp_path, "trainer.accelerator=cpu")
    gpu = _key(tmp_path, "trainer.accelerator=gpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    assert _key(tmp_path, "trainer.accelerator=auto") == cpu
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert _key(tmp_path, "trainer.accelerator=auto") == gpu == _key(tmp_path, "trainer.accelerator=cuda")
