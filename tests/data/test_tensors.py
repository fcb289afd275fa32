"""``data=tensors``: your own inputs and labels from a ``.npz`` or ``.pt`` file, validated with
errors that name the key, standardised with the file's mean/std, keyed by content, and probed
end to end with your own weights."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from torch import nn

from losslands.config import InvalidConfig
from losslands.data.datamodule import TensorsDataModule
from losslands.data.tensors import read_tensors, validate
from losslands.safe_load import UnsafeFileError
from losslands.task import run
from losslands.training.cache import training_config, training_hash
from tests.conftest import compose_cfg

D, K = 6, 3  # features, classes


def features(n_train=40, n_test=20, seed=0):
    """Linearly separable features ``[N, D]`` (float32) and labels in 0..K-1."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(K, D)) * 4
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, K, size=n)
        out[f"{split}_x"] = (centers[y] + rng.normal(size=(n, D))).astype(np.float32)
        out[f"{split}_y"] = y
    return out


def job(tmp_path, path, *extra):
    return compose_cfg(
        tmp_path, "data=tensors", f"data.path={path}", f"data.num_classes={K}", "data.batch_size=16",
        "model=mlp", f"model.in_features={D}", "model.hidden=8", "trainer=cpu",
        "trainer.max_epochs=1", "trainer.enable_progress_bar=false", "logger=none", "probe=eval",
        *extra,
    )


def test_npz_features_with_mean_and_std_are_standardised(tmp_path):
    arrays = features()
    mean, std = arrays["train_x"].mean(0), arrays["train_x"].std(0)
    np.savez(tmp_path / "d.npz", **arrays, mean=mean, std=std)
    dm = TensorsDataModule(str(tmp_path / "d.npz"), num_classes=K, eval_batch_size=100)
    dm.setup()
    x, y = next(dm.iter_batches("train"))
    expected = (torch.from_numpy(arrays["train_x"]) - torch.from_numpy(mean)) / torch.from_numpy(std)
    assert torch.allclose(x, expected, atol=1e-6) and y.dtype == torch.int64
    assert y.tolist() == arrays["train_y"].tolist()


def test_pt_uint8_images_with_per_channel_statistics(tmp_path):
    g = torch.Generator().manual_seed(0)
    imgs = torch.randint(0, 256, (10, 3, 8, 8), dtype=torch.uint8, generator=g)
    data = {"train_x": imgs, "train_y": torch.arange(10) % 2, "test_x": imgs[:4],
            "test_y": torch.zeros(4, dtype=torch.int32),
            "mean": torch.tensor([100.0, 120.0, 90.0]), "std": np.array([50.0, 60.0, 70.0])}
    torch.save(data, tmp_path / "imgs.pt")
    dm = TensorsDataModule(str(tmp_path / "imgs.pt"), num_classes=2, augment=True, batch_size=5)
    dm.setup()
    assert dm.train_x.dtype == torch.uint8 and dm.test_y.dtype == torch.int64
    x, _ = dm.probe_subset(10)
    mean, std = torch.tensor([100.0, 120.0, 90.0]), torch.tensor([50.0, 60.0, 70.0])
    perm = torch.randperm(10, generator=torch.Generator().manual_seed(dm.probe_seed))
    expected = (imgs[perm].float() - mean.view(3, 1, 1)) / std.view(3, 1, 1)
    assert torch.allclose(x, expected)
    xb, _ = next(iter(dm.train_dataloader()))  # crops and flips work on image tensors
    assert xb.shape == (5, 3, 8, 8)


def test_without_statistics_inputs_are_float32_as_stored(tmp_path):
    arrays = features()
    arrays["train_x"] = arrays["train_x"].astype(np.float64)
    np.savez(tmp_path / "d.npz", **arrays)
    data = read_tensors(tmp_path / "d.npz", K)
    assert data.train_x.dtype == torch.float32 and data.mean is None
    dm = TensorsDataModule(str(tmp_path / "d.npz"), num_classes=K)
    dm.setup()
    x, _ = next(dm.iter_batches("test"))
    assert torch.equal(x, torch.from_numpy(arrays["test_x"]))


def _bad(**changes):
    arrays = features(8, 4)
    for k, v in changes.items():
        if v is None:
            arrays.pop(k)
        else:
            arrays[k] = v
    return arrays


@pytest.mark.parametrize("arrays, match", [
    (_bad(test_y=None), "missing test_y; found keys train_x, train_y, test_x"),
    (_bad(train_y=np.array([0, 1, 2, 3, 0, 1, 2, 0])), r"train_y must lie in 0..2 \(data.num_classes=3\); got 0..3"),
    (_bad(train_y=np.full(8, -1)), "got -1..-1"),
    (_bad(train_y=np.zeros(8, np.float32)), "train_y must be a 1-D integer array"),
    (_bad(test_y=np.zeros((4, 1), np.int64)), "test_y must be a 1-D integer array"),
    (_bad(train_y=np.zeros(7, np.int64)), "8 train_x samples but 7 train_y labels"),
    (_bad(test_x=np.zeros((4, D + 1), np.float32)), r"train_x samples have shape \[6\] but test_x samples \[7\]"),
    (_bad(train_x=np.zeros((8, D), np.int64)), "train_x must be uint8 or floating point"),
    (_bad(train_x=np.zeros(8, np.float32)), "one sample per row"),
    (_bad(test_x=np.full((4, D), np.nan, np.float32)), "test_x holds NaN or infinite values"),
    (_bad(mean=np.zeros(D, np.float32)), "give both mean and std, or neither"),
    (_bad(mean=np.zeros(D + 2), std=np.ones(D + 2)), r"mean has shape \(8,\); expected a scalar"),
    (_bad(mean=np.zeros(D), std=np.zeros(D)), "std must be > 0"),
    (_bad(train_x=np.array(["a"] * 8)), "train_x has dtype <U1; expected numbers"),
])
def test_bad_contents_name_the_key(arrays, match):
    with pytest.raises(ValueError, match=match):
        validate(arrays, K, "my.npz")


def test_object_arrays_in_npz_are_refused(tmp_path):
    arrays = features(8, 4)
    arrays["train_x"] = np.array([object()] * 8)
    np.savez(tmp_path / "o.npz", **arrays)
    with pytest.raises(ValueError, match="allow_pickle"):
        read_tensors(tmp_path / "o.npz", K)


class _Evil:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_pt_files_run_no_code(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({**{k: torch.from_numpy(v) for k, v in features(8, 4).items()}, "x": _Evil(marker)},
               tmp_path / "evil.pt")
    with pytest.raises(UnsafeFileError, match="system"):
        read_tensors(tmp_path / "evil.pt", K)
    assert not marker.exists()


def test_other_suffixes_and_non_dicts_are_refused(tmp_path):
    (tmp_path / "d.csv").write_text("1,2")
    with pytest.raises(ValueError, match=r"\.npz, \.pt, \.pth files, not \.csv"):
        read_tensors(tmp_path / "d.csv", K)
    torch.save([torch.zeros(2)], tmp_path / "list.pt")
    with pytest.raises(ValueError, match="holds a list; expected a dict with keys train_x"):
        read_tensors(tmp_path / "list.pt", K)


def test_augmenting_features_is_refused(tmp_path):
    np.savez(tmp_path / "d.npz", **features())
    dm = TensorsDataModule(str(tmp_path / "d.npz"), num_classes=K, augment=True)
    with pytest.raises(ValueError, match="data.augment=true crops and flips images"):
        dm.setup()


def test_job_config_needs_path_and_classes(tmp_path):
    with pytest.raises(InvalidConfig, match="data.path must name a .pt or .npz file") as err:
        run(compose_cfg(tmp_path, "data=tensors", "logger=none", "probe=eval"))
    assert "data.num_classes must be set" in str(err.value)
    with pytest.raises(InvalidConfig, match="no such file"):
        run(compose_cfg(tmp_path, "data=tensors", f"data.path={tmp_path / 'x.npz'}",
                        "data.num_classes=2", "logger=none", "probe=eval"))


def test_training_key_holds_the_file_content_not_its_path(tmp_path):
    np.savez(tmp_path / "a.npz", **features())
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.npz").write_bytes((tmp_path / "a.npz").read_bytes())
    np.savez(tmp_path / "c.npz", **features(seed=1))

    def key(path):
        return training_hash(training_config(job(tmp_path, path)))

    assert key(tmp_path / "a.npz") == key(tmp_path / "sub" / "b.npz") != key(tmp_path / "c.npz")
    assert "path" not in training_config(job(tmp_path, tmp_path / "a.npz"))["data"]


def test_trains_and_probes_own_weights_on_own_data(tmp_path):
    """Training on the file works, and weights trained elsewhere on the same standardised
    features get the test accuracy their owner measured."""
    arrays = features()
    mean, std = arrays["train_x"].mean(0), arrays["train_x"].std(0)
    np.savez(tmp_path / "d.npz", **arrays, mean=mean, std=std)
    assert run(job(tmp_path / "t", tmp_path / "d.npz"))["status"] == "completed"

    torch.manual_seed(0)
    from losslands.models import MLP

    model = MLP(in_features=D, hidden=8, num_classes=K)
    x = (torch.from_numpy(arrays["train_x"]) - torch.from_numpy(mean)) / torch.from_numpy(std)
    y = torch.from_numpy(arrays["train_y"])
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(20):
        opt.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
    xt = (torch.from_numpy(arrays["test_x"]) - torch.from_numpy(mean)) / torch.from_numpy(std)
    with torch.no_grad():
        acc = (model(xt).argmax(1) == torch.from_numpy(arrays["test_y"])).float().mean().item()
    assert acc > 0.5
    torch.save({"model_state_dict": model.state_dict()}, tmp_path / "w.pt")
    record = run(job(tmp_path / "w", tmp_path / "d.npz", f"weights={tmp_path / 'w.pt'}"))
    assert record["scalars"]["test_acc"] == pytest.approx(acc, abs=1e-9)
