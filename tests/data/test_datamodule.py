"""Augmentation, synthetic data and the datamodule's batching contract (synthetic data only),
including epoch-exact resumption under Lightning's fit loop."""

import math

import lightning
import pytest
import torch
from torch.nn import functional as F

from losslands.data import (
    CIFAR10_MEAN,
    CIFAR10_STD,
    DeviceLoader,
    make_synthetic,
    normalize,
    random_crop,
    random_crop_flip,
    random_flip,
)
from losslands.data.augment import crop_offsets, flip_mask
from losslands.data.datamodule import CIFAR10DataModule
from losslands.data.loader import epoch_seed
from losslands.models import MLP


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def images(n=64, seed=0):
    return torch.randint(0, 256, (n, 3, 32, 32), dtype=torch.uint8, generator=gen(seed))


def batches(loader):
    return [(x.clone(), y.clone()) for x, y in loader]


def same(a, b):
    return len(a) == len(b) and all(
        torch.equal(xa, xb) and torch.equal(ya, yb) for (xa, ya), (xb, yb) in zip(a, b, strict=True)
    )


# ---- augmentation ----------------------------------------------------------------------------


def test_random_crop_equals_explicit_crop_of_padded_image():
    x = images(200)
    out = random_crop(x, padding=4, generator=gen(3))
    offsets = crop_offsets(200, 4, gen(3))
    assert len({tuple(o) for o in offsets.tolist()}) > 40  # offsets differ per image
    for b in range(200):
        padded = torch.zeros(3, 40, 40, dtype=torch.uint8)
        padded[:, 4:36, 4:36] = x[b]
        r, c = offsets[b].tolist()
        assert torch.equal(out[b], padded[:, r : r + 32, c : c + 32])


def test_crop_offsets_cover_exactly_the_randomcrop_range():
    offsets = crop_offsets(5000, 4, gen(0))
    assert {tuple(o) for o in offsets.tolist()} == {(r, c) for r in range(9) for c in range(9)}


def test_random_flip_mirrors_about_half_the_images():
    x = images(4000)
    out = random_flip(x, generator=gen(5))
    mask = flip_mask(4000, gen(5))
    assert torch.equal(out[mask], x[mask][..., torch.arange(31, -1, -1)])
    assert torch.equal(out[~mask], x[~mask])
    assert 0.45 < mask.float().mean().item() < 0.55  # binomial sd 0.008


def test_fused_crop_flip_equals_composition():
    x = images(300)
    g = gen(11)
    expected = random_flip(random_crop(x, 4, g), g)
    assert torch.equal(random_crop_flip(x, 4, gen(11)), expected)
    xf = x.float()  # dtype-agnostic
    g = gen(12)
    torch.testing.assert_close(
        random_crop_flip(xf, 2, gen(12)), random_flip(random_crop(xf, 2, g), g), rtol=0, atol=0
    )


@pytest.mark.parametrize("fn", [random_crop, random_flip, random_crop_flip])
def test_augmentation_requires_generator(fn):
    with pytest.raises(ValueError, match="generator"):
        fn(images(2))


def test_normalize_numerics():
    x = images(8)
    mean = torch.tensor(CIFAR10_MEAN, dtype=torch.float64).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD, dtype=torch.float64).view(3, 1, 1)
    expected = (x.double() / 255 - mean) / std
    out = normalize(x)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out.double(), expected, rtol=0, atol=1e-5)
    ends = normalize(torch.tensor([0, 255], dtype=torch.uint8).view(1, 1, 2).expand(3, 1, 2))
    torch.testing.assert_close(ends[0, 0, 0].item(), -0.4914 / 0.2470, rtol=0, atol=1e-5)
    torch.testing.assert_close(ends[2, 0, 1].item(), (1 - 0.4465) / 0.2616, rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match="uint8"):
        normalize(out)


def test_augmentation_leaves_global_rng_alone():
    state = torch.random.get_rng_state()
    random_crop_flip(random_flip(random_crop(images(16), 4, gen()), gen()), 4, gen())
    assert torch.equal(torch.random.get_rng_state(), state)


# ---- synthetic data --------------------------------------------------------------------------


def test_synthetic_shapes_determinism_and_balance():
    state = torch.random.get_rng_state()
    a = make_synthetic(1003, 200, seed=0)
    assert torch.equal(torch.random.get_rng_state(), state)
    b = make_synthetic(1003, 200, seed=0)
    c = make_synthetic(1003, 200, seed=1)
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    assert not torch.equal(a[0], c[0])
    train_x, train_y, test_x, test_y = a
    assert train_x.dtype == torch.uint8 and train_x.shape == (1003, 3, 32, 32)
    assert test_x.shape == (200, 3, 32, 32) and train_y.dtype == torch.int64
    assert torch.bincount(train_y).tolist() == [101] * 3 + [100] * 7
    assert torch.bincount(test_y).tolist() == [20] * 10
    with pytest.raises(ValueError, match="data.synthetic_train"):
        make_synthetic(0, 10)


def _one_epoch_accuracy(augment):
    dm = CIFAR10DataModule(synthetic=True, augment=augment, batch_size=64)
    dm.setup()
    torch.manual_seed(0)
    model = MLP(hidden=32)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for x, y in dm.train_dataloader():
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    with torch.no_grad():
        hits = sum((model(x).argmax(1) == y).sum().item() for x, y in dm.iter_batches("test"))
    return hits / dm.num_test


def test_synthetic_data_is_learnable_in_one_epoch():
    assert _one_epoch_accuracy(augment=False) > 0.8
    assert _one_epoch_accuracy(augment=True) > 0.3  # chance is 0.1


# ---- datamodule ------------------------------------------------------------------------------


def make_dm(**kwargs):
    kwargs = {"synthetic": True, "synthetic_train": 1000, "synthetic_test": 300, **kwargs}
    dm = CIFAR10DataModule(**kwargs)
    dm.prepare_data()
    dm.setup()
    return dm


def test_setup_is_idempotent_and_loads_uint8_on_cpu():
    dm = make_dm()
    tensors = (dm.train_x, dm.train_y, dm.test_x, dm.test_y)
    dm.setup("fit")
    now = (dm.train_x, dm.train_y, dm.test_x, dm.test_y)
    assert all(a is b for a, b in zip(tensors, now, strict=True))
    assert (dm.num_train, dm.num_test) == (1000, 300)
    assert dm.train_x.dtype == torch.uint8 and dm.train_x.device.type == "cpu"
    expected = make_synthetic(1000, 300)
    assert torch.equal(dm.train_x, expected[0]) and torch.equal(dm.test_y, expected[3])


def test_use_before_setup_is_an_error():
    dm = CIFAR10DataModule(synthetic=True)
    with pytest.raises(RuntimeError, match="setup"):
        dm.train_dataloader()


def test_subsets_are_seeded_subsets_of_the_splits():
    full = make_dm()
    dm = make_dm(train_subset=300, val_subset=100, subset_seed=4, seed=9)
    assert (dm.num_train, dm.num_test) == (300, 100)
    idx = torch.randperm(1000, generator=gen(4))[:300].sort().values
    assert torch.equal(dm.train_x, full.train_x[idx]) and torch.equal(dm.train_y, full.train_y[idx])
    tidx = torch.randperm(300, generator=gen(4))[:100].sort().values
    assert torch.equal(dm.test_x, full.test_x[tidx])
    # The job seed does not change the subset; the subset seed does.
    assert torch.equal(make_dm(train_subset=300, subset_seed=4, seed=0).train_x, dm.train_x)
    assert not torch.equal(make_dm(train_subset=300, subset_seed=5).train_x, dm.train_x)


@pytest.mark.parametrize(
    "key, value", [("train_subset", 1001), ("train_subset", 0), ("val_subset", 301)]
)
def test_bad_subset_names_the_key(key, value):
    with pytest.raises(ValueError, match=f"data.{key}={value}"):
        make_dm(**{key: value})


@pytest.mark.parametrize("key", ["batch_size", "eval_batch_size"])
def test_bad_batch_size_names_the_key(key):
    with pytest.raises(ValueError, match=f"data.{key}"):
        CIFAR10DataModule(synthetic=True, **{key: 0})


def test_loader_lengths_and_batch_sizes():
    dm = make_dm(batch_size=128, eval_batch_size=128, val_subset=290)
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert len(train) == math.ceil(1000 / 128) == 8 and len(val) == 3
    assert [x.shape[0] for x, _ in train] == [128] * 7 + [1000 - 7 * 128]
    assert [x.shape[0] for x, _ in val] == [128, 128, 34]
    assert len(dm.test_dataloader()) == 3
    assert len(make_dm().val_dataloader()) == 1  # eval_batch_size=1000 > 300


def test_train_epoch_is_documented_permutation_and_augmentation():
    dm = make_dm(batch_size=100, seed=3)
    loader = dm.train_dataloader()
    loader.sampler.set_epoch(2)
    got = batches(loader)
    g = gen(epoch_seed(3, 2))
    perm = torch.randperm(1000, generator=g)
    for i, (x, y) in enumerate(got):
        idx = perm[i * 100 : (i + 1) * 100]
        assert torch.equal(y, dm.train_y[idx])
        assert torch.equal(x, normalize(random_crop_flip(dm.train_x[idx], 4, g)))
        assert x.dtype == torch.float32 and y.dtype == torch.int64


def test_unaugmented_train_epoch_covers_every_image_once():
    x = images(250)
    loader = DeviceLoader(x, torch.arange(250), 64, shuffle=True, augment=False, seed=1)
    got = batches(loader)
    ids = torch.cat([y for _, y in got])
    assert torch.equal(ids.sort().values, torch.arange(250))
    assert not torch.equal(ids, torch.arange(250))
    assert torch.equal(torch.cat([xb for xb, _ in got]), normalize(x[ids]))


def test_same_seed_same_batches_and_epochs_differ():
    a, b = make_dm(seed=7).train_dataloader(), make_dm(seed=7).train_dataloader()
    torch.manual_seed(123)  # the global RNG must not matter
    epoch0 = batches(a)
    torch.manual_seed(456)
    assert same(epoch0, batches(b))
    a.sampler.set_epoch(1)
    epoch1 = batches(a)
    assert not torch.equal(epoch0[0][1], epoch1[0][1])
    assert not same(epoch0, batches(make_dm(seed=8).train_dataloader()))
    # Without set_epoch the loader repeats the same epoch.
    assert same(epoch1, batches(a))


def test_set_epoch_reproduces_an_epoch_of_a_continuous_run():
    loader = make_dm(seed=2).train_dataloader()
    run = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        run.append(batches(loader))
    fresh = make_dm(seed=2).train_dataloader()
    fresh.set_epoch(2)
    assert same(fresh_batches := batches(fresh), run[2])
    assert not same(fresh_batches, run[1])


def test_set_epoch_after_iter_still_applies():
    loader = make_dm().train_dataloader()
    loader.set_epoch(4)
    expected = batches(loader)
    loader.set_epoch(0)
    it = iter(loader)  # Lightning probes iter() before the epoch starts
    loader.set_epoch(4)
    assert same(list(it), expected)


def test_global_rng_untouched():
    dm = make_dm(train_subset=500, val_subset=100)
    state = torch.random.get_rng_state()
    for epoch in range(2):
        loader = dm.train_dataloader()
        loader.sampler.set_epoch(epoch)
        batches(loader)
    batches(dm.val_dataloader())
    list(dm.iter_batches("train"))
    dm.probe_subset(50, 1)
    assert torch.equal(torch.random.get_rng_state(), state)


def test_eval_batches_are_sequential_unaugmented_and_epoch_free():
    dm = make_dm(eval_batch_size=128)
    val = dm.val_dataloader()
    first = batches(val)
    val.sampler.set_epoch(5)
    assert same(first, batches(val))
    assert torch.equal(torch.cat([x for x, _ in first]), normalize(dm.test_x))
    assert torch.equal(torch.cat([y for _, y in first]), dm.test_y)
    assert same(first, batches(dm.iter_batches("test", 128)))
    train = batches(dm.iter_batches("train", 300))
    assert [x.shape[0] for x, _ in train] == [300, 300, 300, 100]
    assert torch.equal(torch.cat([x for x, _ in train]), normalize(dm.train_x))
    assert len(batches(dm.iter_batches("train"))) == math.ceil(1000 / 128)  # eval_batch_size
    with pytest.raises(ValueError, match="'train' or 'test'"):
        dm.iter_batches("val")


def test_probe_subset_fixed_across_job_seeds_and_disjoint():
    dm = make_dm(seed=0, train_subset=600)
    other = make_dm(seed=99, train_subset=600)
    x0, y0 = dm.probe_subset(200, 0)
    assert same([(x0, y0)], [other.probe_subset(200, 0)])
    perm = torch.randperm(600, generator=gen(1234))
    assert torch.equal(x0, normalize(dm.train_x[perm[:200]])) and torch.equal(
        y0, dm.train_y[perm[:200]]
    )
    x1, _ = dm.probe_subset(200, 1)
    x2, _ = dm.probe_subset(200, 2)
    rows = torch.cat([x0, x1, x2]).reshape(600, -1)
    assert torch.unique(rows, dim=0).shape[0] == 600  # disjoint, together the whole split
    assert not torch.equal(
        make_dm(probe_seed=1).probe_subset(200)[0], make_dm().probe_subset(200)[0]
    )


def test_probe_subset_too_large_names_sizes_and_keys():
    dm = make_dm(train_subset=500)
    with pytest.raises(ValueError) as info:
        dm.probe_subset(200, index=2)
    msg = str(info.value)
    assert "600" in msg and "500" in msg and "probe.n_samples" in msg and "data.train_subset" in msg
    dm.probe_subset(250, index=1)  # exactly fits
    with pytest.raises(ValueError, match="n >= 1"):
        dm.probe_subset(0)


def test_to_moves_splits_and_issued_loaders():
    dm = make_dm()
    loader, val = dm.train_dataloader(), dm.val_dataloader()
    assert dm.to("meta") is dm
    assert dm.train_x.device.type == "meta" and dm.test_y.device.type == "meta"
    assert loader.x is dm.train_x and loader.y is dm.train_y and val.x is dm.test_x


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_batches_identical_on_cuda():
    cpu = batches(make_dm(seed=1).train_dataloader())
    dm = make_dm(seed=1).to("cuda")
    gpu = batches(dm.train_dataloader())
    assert all(x.is_cuda for x, _ in gpu)
    assert same(cpu, [(x.cpu(), y.cpu()) for x, y in gpu])
    assert same(
        [dm.probe_subset(100)], [tuple(t.cuda() for t in make_dm(seed=1).probe_subset(100))]
    )


# ---- Lightning ------------------------------------------------------------------------------


class Recorder(lightning.LightningModule):
    """Records the labels of every training batch per epoch."""

    def __init__(self):
        super().__init__()
        self.model = MLP(depth=0)
        self.seen = {}

    def training_step(self, batch, batch_idx):
        x, y = batch
        self.seen.setdefault(self.current_epoch, []).append((x.sum().item(), y.clone()))
        return F.cross_entropy(self.model(x), y)

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", F.cross_entropy(self.model(x), y))

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.01)


def fit(max_epochs, root, ckpt_path=None, callbacks=()):
    torch.manual_seed(0)
    module = Recorder()
    trainer = lightning.Trainer(
        accelerator="cpu",
        devices=1,
        max_epochs=max_epochs,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=bool(callbacks),
        callbacks=list(callbacks),
        default_root_dir=root,
        num_sanity_val_steps=0,
    )
    dm = CIFAR10DataModule(
        synthetic=True, synthetic_train=200, synthetic_test=50, batch_size=64, seed=5
    )
    trainer.fit(module, datamodule=dm, ckpt_path=ckpt_path)
    return module.seen


def test_lightning_sets_epoch_and_resume_reproduces_batches(tmp_path):
    """Lightning's fit loop calls loader.sampler.set_epoch; a resumed run sees the same epoch 1."""
    full = fit(2, tmp_path / "full")
    assert set(full) == {0, 1}
    assert not torch.equal(torch.cat([y for _, y in full[0]]), torch.cat([y for _, y in full[1]]))
    ckpt = lightning.pytorch.callbacks.ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True)
    fit(1, tmp_path / "part", callbacks=[ckpt])
    resumed = fit(2, tmp_path / "resumed", ckpt_path=tmp_path / "ckpt" / "last.ckpt")
    assert set(resumed) == {1}
    assert len(resumed[1]) == len(full[1]) == 4
    for (sa, ya), (sb, yb) in zip(resumed[1], full[1], strict=True):
        assert sa == sb and torch.equal(ya, yb)
