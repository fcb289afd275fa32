"""CIFAR-100 reader: a tiny fake release in the official pickle format (train, test, meta with
fine and coarse labels), every validation error, the download (monkeypatched, no network), the
datamodule and the composed ``data=cifar100`` job config."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from losslands.data import cifar100
from losslands.data.cifar100 import (
    FOLDER,
    MD5,
    URL,
    download_cifar100,
    ensure_cifar100,
    read_cifar100,
)
from losslands.data.datamodule import CIFAR10DataModule
from tests.conftest import compose_cfg

N_TRAIN, N_TEST = 8, 4


@pytest.fixture
def small(monkeypatch):
    """Shrink the expected split sizes so fake releases stay tiny."""
    monkeypatch.setitem(cifar100.SPLIT_SIZES, "train", N_TRAIN)
    monkeypatch.setitem(cifar100.SPLIT_SIZES, "test", N_TEST)


def fake_split(n, seed):
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            [int(v) for v in rng.integers(0, 100, size=n)])


def write_release(root, bytes_keys=True, protocol=2, overrides=None):
    """The python release as Python 2 wrote it (bytes keys), with ``overrides`` per file."""
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    splits = {"train": fake_split(N_TRAIN, 0), "test": fake_split(N_TEST, 1)}
    contents = {
        name: {key("data"): data, key("fine_labels"): labels,
               key("coarse_labels"): [v // 5 for v in labels], key("batch_label"): name.encode(),
               key("filenames"): [f"{i}.png".encode() for i in range(len(labels))]}
        for name, (data, labels) in splits.items()
    }
    contents["meta"] = {key("fine_label_names"): [f"c{i}".encode() for i in range(100)],
                        key("coarse_label_names"): [f"s{i}".encode() for i in range(20)]}
    contents.update(overrides or {})
    for name, obj in contents.items():
        with open(folder / name, "wb") as f:
            if isinstance(obj, bytes):
                f.write(obj)
            else:
                pickle.dump(obj, f, protocol=protocol)
    return splits


@pytest.mark.parametrize("bytes_keys, protocol", [(True, 2), (False, pickle.DEFAULT_PROTOCOL)])
def test_reads_fine_labels_in_file_order(tmp_path, small, bytes_keys, protocol):
    splits = write_release(tmp_path, bytes_keys=bytes_keys, protocol=protocol)
    train_x, train_y, test_x, test_y = read_cifar100(tmp_path)
    assert train_x.dtype == torch.uint8 and train_x.shape == (N_TRAIN, 3, 32, 32)
    assert test_x.shape == (N_TEST, 3, 32, 32) and test_y.dtype == torch.int64
    data, labels = splits["train"]
    assert torch.equal(train_x, torch.from_numpy(data).reshape(-1, 3, 32, 32))
    assert train_y.tolist() == labels and test_y.tolist() == splits["test"][1]


def test_real_split_sizes_default():
    assert cifar100.SPLIT_SIZES == {"train": 50_000, "test": 10_000}


def test_missing_files_are_named_with_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        read_cifar100(tmp_path)
    msg = str(err.value)
    assert "train, test, meta" in msg and "data.root" in msg and "data.download=true" in msg


@pytest.mark.parametrize("override, match", [
    ({"train": {b"data": np.zeros((N_TRAIN, 3072), np.float32), b"fine_labels": [0] * N_TRAIN}},
     "uint8 array of shape"),
    ({"train": {b"data": np.zeros((N_TRAIN, 3072), np.uint8), b"fine_labels": [100] * N_TRAIN}},
     r"fine_labels must lie in 0..99, got range 100..100"),
    ({"test": {b"data": np.zeros((N_TEST, 3072), np.uint8), b"fine_labels": [0] * 3}},
     "expected 4 fine_labels"),
    ({"test": {b"data": np.zeros((N_TEST, 3072), np.uint8), b"labels": [0] * N_TEST}},
     "no 'fine_labels' entry"),
    ({"meta": {b"fine_label_names": [b"x"] * 10}}, "expected 100 fine_label_names"),
    ({"meta": b"garbage"}, "is not a CIFAR-100 python file"),
])
def test_malformed_files_are_named(tmp_path, small, override, match):
    write_release(tmp_path, overrides=override)
    with pytest.raises(ValueError, match=match):
        read_cifar100(tmp_path)


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_refuses_to_unpickle_code(tmp_path, small):
    marker = tmp_path / "pwned"
    write_release(tmp_path, overrides={"meta": {b"fine_label_names": _Evil(marker)}})
    with pytest.raises(ValueError, match="unexpected object"):
        read_cifar100(tmp_path)
    assert not marker.exists()


def test_ensure_downloads_only_when_missing_and_allowed(tmp_path, small, monkeypatch):
    monkeypatch.setattr(cifar100, "download_cifar100", lambda root: pytest.fail("downloaded"))
    with pytest.raises(FileNotFoundError, match="data.root"):
        ensure_cifar100(tmp_path, download=False)
    calls = []
    monkeypatch.setattr(cifar100, "download_cifar100",
                        lambda root: calls.append(root) or write_release(tmp_path))
    assert ensure_cifar100(tmp_path, download=True) == tmp_path / FOLDER and calls == [tmp_path]
    ensure_cifar100(tmp_path, download=True)  # present now: no second download
    assert len(calls) == 1


def test_download_failure_names_root_and_offline_fix(tmp_path, monkeypatch):
    def offline(root):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar100, "download_cifar100", offline)
    with pytest.raises(RuntimeError, match="data.download=false") as err:
        ensure_cifar100(tmp_path, download=True)
    assert str(tmp_path) in str(err.value) and isinstance(err.value.__cause__, OSError)


def test_download_uses_official_url_and_md5(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    calls = []
    monkeypatch.setattr(tv_utils, "download_and_extract_archive", lambda *a, **k: calls.append((a, k)))
    download_cifar100(tmp_path)
    assert URL == "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
    assert MD5 == "eb9058c3a382ffc7106e4002c42a8d85"
    assert calls == [((URL,), {"download_root": str(tmp_path), "md5": MD5})]


def test_datamodule_serves_cifar100(tmp_path, small):
    splits = write_release(tmp_path)
    dm = CIFAR10DataModule(root=str(tmp_path), dataset="cifar100", num_classes=100, augment=False,
                           batch_size=4, eval_batch_size=4)
    dm.prepare_data()
    dm.setup()
    assert dm.num_classes == 100 and (dm.num_train, dm.num_test) == (N_TRAIN, N_TEST)
    assert dm.train_y.tolist() == splits["train"][1]
    x, y = next(iter(dm.val_dataloader()))
    assert x.dtype == torch.float32 and x.shape == (4, 3, 32, 32)


def test_datamodule_checks_the_number_of_classes(tmp_path):
    with pytest.raises(ValueError, match="data.num_classes=10, but cifar100 has 100 classes"):
        CIFAR10DataModule(root=str(tmp_path), dataset="cifar100", num_classes=10)
    with pytest.raises(ValueError, match="data.dataset='cifar1000'"):
        CIFAR10DataModule(root=str(tmp_path), dataset="cifar1000")


def test_job_config_reads_cifar100_and_keys_it_apart(tmp_path, small):
    from losslands.training.cache import training_config, training_hash
    from losslands.training.fit import build_datamodule

    write_release(tmp_path)
    cfg = compose_cfg(tmp_path, "data=cifar100", f"data.root={tmp_path}", "data.download=false")
    assert cfg.model.num_classes == 100 and cfg.data.dataset == "cifar100"
    dm = build_datamodule(cfg)
    assert dm.num_train == N_TRAIN and int(dm.train_y.max()) < 100
    cifar10 = compose_cfg(tmp_path, "data=cifar10", f"data.root={tmp_path}")
    assert training_hash(training_config(cfg)) != training_hash(training_config(cifar10))
    assert "dataset" not in training_config(cifar10)["data"]
