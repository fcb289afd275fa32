"""CIFAR-10 reader: fake releases in the official pickle format, every validation error, the
download path (monkeypatched, no network), and the real data when LOSSLANDS_CIFAR10_ROOT is set."""

import math
import os
import pickle

import numpy as np
import pytest
import torch

from losslands.data import CIFAR10_MEAN, CIFAR10_STD, cifar10
from losslands.data.cifar10 import (
    ALL_FILES,
    FOLDER,
    MD5,
    URL,
    download_cifar10,
    ensure_cifar10,
    read_cifar10,
)
from losslands.data.datamodule import CIFAR10DataModule

CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def fake_batches(n, seed=0):
    """Per file name: (data uint8 [n, 3072], labels list) with distinct, known pixels."""
    rng = np.random.default_rng(seed)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    return {
        name: (
            rng.integers(0, 256, size=(n, 3072), dtype=np.uint8),
            [int(v) for v in rng.integers(0, 10, size=n)],
        )
        for name in names
    }


def write_release(root, batches, bytes_keys=True, protocol=2, overrides=None):
    """Write ``batches`` as the python release; bytes keys mimic the Python 2 pickles."""
    folder = root / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    key = (lambda k: k.encode()) if bytes_keys else (lambda k: k)
    contents = {
        name: {key("data"): data, key("labels"): labels, key("batch_label"): name.encode()}
        for name, (data, labels) in batches.items()
    }
    contents["batches.meta"] = {
        key("label_names"): [c.encode() for c in CLASSES],
        key("num_cases_per_batch"): 10000,
        key("num_vis"): 3072,
    }
    contents.update(overrides or {})
    for name, obj in contents.items():
        with open(folder / name, "wb") as f:
            if isinstance(obj, bytes):
                f.write(obj)
            else:
                pickle.dump(obj, f, protocol=protocol)
    return folder


@pytest.fixture
def small(monkeypatch):
    """Shrink the expected batch size so fake releases stay tiny."""
    monkeypatch.setattr(cifar10, "IMAGES_PER_BATCH", 4)
    return 4


@pytest.mark.parametrize("bytes_keys, protocol", [(True, 2), (False, pickle.DEFAULT_PROTOCOL)])
def test_reads_release_in_file_order(tmp_path, small, bytes_keys, protocol):
    batches = fake_batches(small)
    write_release(tmp_path, batches, bytes_keys=bytes_keys, protocol=protocol)
    train_x, train_y, test_x, test_y = read_cifar10(tmp_path)
    assert train_x.dtype == torch.uint8 and train_x.shape == (5 * small, 3, 32, 32)
    assert train_y.dtype == torch.int64 and train_y.shape == (5 * small,)
    assert test_x.shape == (small, 3, 32, 32) and test_y.shape == (small,)
    for i in range(5):
        data, labels = batches[f"data_batch_{i + 1}"]
        rows = slice(i * small, (i + 1) * small)
        # Channel-major rows: the first 1024 bytes are the red plane, row by row.
        assert np.array_equal(train_x[rows, 0].numpy().reshape(small, -1), data[:, :1024])
        assert np.array_equal(train_x[rows, 2, 31, 31].numpy(), data[:, 3071])
        assert train_y[rows].tolist() == labels
    data, labels = batches["test_batch"]
    assert np.array_equal(test_x.numpy().reshape(small, -1), data)
    assert test_y.tolist() == labels


def test_real_batch_size_default(tmp_path):
    """Unpatched: full-size fake batches give 50,000 / 10,000 images."""
    n = 10000
    data = np.zeros((n, 3072), dtype=np.uint8)
    labels = [i % 10 for i in range(n)]
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    write_release(tmp_path, {name: (data, labels) for name in names})
    train_x, train_y, test_x, test_y = read_cifar10(str(tmp_path))
    assert train_x.shape == (50000, 3, 32, 32) and test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(train_y).tolist() == [5000] * 10


@pytest.mark.parametrize("missing", ["data_batch_3", "test_batch", "batches.meta"])
def test_missing_file_names_it_and_the_fix(tmp_path, small, missing):
    folder = write_release(tmp_path, fake_batches(small))
    (folder / missing).unlink()
    with pytest.raises(FileNotFoundError) as info:
        read_cifar10(tmp_path)
    msg = str(info.value)
    assert missing in msg and "data.root" in msg and "data.download=true" in msg
    assert FOLDER in msg
    assert all(name not in msg.split(":")[1] for name in ALL_FILES if name != missing)


def test_empty_root_lists_every_file(tmp_path):
    with pytest.raises(FileNotFoundError) as info:
        read_cifar10(tmp_path / "nowhere")
    assert all(name in str(info.value) for name in ALL_FILES)


def _bad(small, data=None, labels=None):
    good_data, good_labels = fake_batches(small)["data_batch_2"]
    return {
        b"data": good_data if data is None else data,
        b"labels": good_labels if labels is None else labels,
    }


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda n: _bad(n, data=np.zeros((n - 1, 3072), np.uint8)), "shape"),
        (lambda n: _bad(n, data=np.zeros((n, 3072), np.int32)), "uint8"),
        (lambda n: _bad(n, data=[0] * 3072 * n), "uint8"),
        (lambda n: _bad(n, labels=[10] * n), "0..9"),
        (lambda n: _bad(n, labels=[-1] * n), "0..9"),
        (lambda n: _bad(n, labels=[0] * (n + 1)), "labels"),
        (lambda n: _bad(n, labels=["cat"] * n), "labels"),
        (lambda n: {b"labels": [0] * n}, "'data'"),
        (lambda n: [1, 2, 3], "dict"),
        (lambda n: b"\x80\x02}q\x00(", "not a CIFAR-10 python file"),
    ],
)
def test_malformed_batch_names_the_file(tmp_path, small, make, match):
    write_release(tmp_path, fake_batches(small), overrides={"data_batch_2": make(small)})
    with pytest.raises(ValueError, match=match) as info:
        read_cifar10(tmp_path)
    assert "data_batch_2" in str(info.value)


def test_meta_must_list_ten_classes(tmp_path, small):
    write_release(
        tmp_path, fake_batches(small), overrides={"batches.meta": {b"label_names": [b"a"]}}
    )
    with pytest.raises(ValueError, match="batches.meta"):
        read_cifar10(tmp_path)


class _Exploit:
    def __reduce__(self):
        return (os.remove, ("never-called",))


def test_refuses_to_unpickle_code(tmp_path, small):
    write_release(tmp_path, fake_batches(small), overrides={"test_batch": {b"data": _Exploit()}})
    with pytest.raises(ValueError, match="test_batch.*posix.remove|test_batch.*nt.remove"):
        read_cifar10(tmp_path)


def test_ensure_present_does_not_download(tmp_path, small, monkeypatch):
    write_release(tmp_path, fake_batches(small))
    monkeypatch.setattr(cifar10, "download_cifar10", lambda root: pytest.fail("downloaded"))
    assert ensure_cifar10(tmp_path, download=True) == tmp_path / FOLDER


def test_ensure_absent_without_download_names_root(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "download_cifar10", lambda root: pytest.fail("downloaded"))
    with pytest.raises(FileNotFoundError, match="data.root.*data.download=true"):
        ensure_cifar10(tmp_path, download=False)


def test_ensure_downloads_when_absent(tmp_path, small, monkeypatch):
    calls = []

    def fake_download(root):
        calls.append(root)
        write_release(tmp_path, fake_batches(small))

    monkeypatch.setattr(cifar10, "download_cifar10", fake_download)
    assert ensure_cifar10(tmp_path, download=True) == tmp_path / FOLDER
    assert calls == [tmp_path]
    assert read_cifar10(tmp_path)[0].shape == (5 * small, 3, 32, 32)


def test_download_failure_names_root_and_offline_fix(tmp_path, monkeypatch):
    def offline(root):
        raise OSError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(cifar10, "download_cifar10", offline)
    with pytest.raises(RuntimeError) as info:
        ensure_cifar10(tmp_path, download=True)
    msg = str(info.value)
    assert "data.root" in msg and str(tmp_path) in msg and "data.download=false" in msg
    assert "name resolution" in msg and isinstance(info.value.__cause__, OSError)


def test_download_empty_archive_still_reports_missing_files(tmp_path, monkeypatch):
    monkeypatch.setattr(cifar10, "download_cifar10", lambda root: None)
    with pytest.raises(FileNotFoundError, match="data_batch_1"):
        ensure_cifar10(tmp_path, download=True)


def test_download_uses_official_url_and_md5(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    calls = []
    monkeypatch.setattr(
        tv_utils, "download_and_extract_archive", lambda *a, **k: calls.append((a, k))
    )
    download_cifar10(tmp_path)
    assert URL == "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
    assert MD5 == "c58f30108f718f92721af3b95e74349a"
    assert calls == [((URL,), {"download_root": str(tmp_path), "md5": MD5})]


# ---- real data -------------------------------------------------------------------------------

REAL_ROOT = os.environ.get("LOSSLANDS_CIFAR10_ROOT")
needs_real = pytest.mark.skipif(
    not REAL_ROOT,
    reason="set LOSSLANDS_CIFAR10_ROOT to a directory containing cifar-10-batches-py",
)


@needs_real
def test_real_cifar10_counts_and_pixel_statistics():
    train_x, train_y, test_x, test_y = read_cifar10(REAL_ROOT)
    assert train_x.shape == (50000, 3, 32, 32) and test_x.shape == (10000, 3, 32, 32)
    assert torch.bincount(train_y, minlength=10).tolist() == [5000] * 10
    assert torch.bincount(test_y, minlength=10).tolist() == [1000] * 10
    # Exact per-channel moments from the 256-bin histogram of each channel.
    values = torch.arange(256, dtype=torch.float64) / 255
    for c in range(3):
        hist = torch.bincount(train_x[:, c].reshape(-1), minlength=256).double()
        p = hist / hist.sum()
        mean = (p * values).sum()
        std = ((p * values**2).sum() - mean**2).sqrt()
        assert abs(mean.item() - CIFAR10_MEAN[c]) < 0.01
        assert abs(std.item() - CIFAR10_STD[c]) < 0.01


@needs_real
def test_real_cifar10_datamodule_subset_and_normalisation():
    dm = CIFAR10DataModule(root=REAL_ROOT, train_subset=5000, batch_size=128, eval_batch_size=1000)
    dm.prepare_data()
    dm.setup()
    assert (dm.num_train, dm.num_test) == (5000, 10000)
    assert len(dm.train_dataloader()) == math.ceil(5000 / 128)
    assert len(dm.val_dataloader()) == 10
    x = torch.cat([xb for xb, _ in dm.iter_batches("test")])
    # Normalised with the training-set statistics, the test split is near zero mean, unit std.
    torch.testing.assert_close(x.mean(dim=(0, 2, 3)), torch.zeros(3), atol=0.05, rtol=0)
    torch.testing.assert_close(x.std(dim=(0, 2, 3)), torch.ones(3), atol=0.05, rtol=0)
