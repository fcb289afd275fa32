"""CIFAR-10 (or its synthetic stand-in) held as whole uint8 tensors, batched on their device.

CIFAR-10 is 150 MB as uint8, so it fits on any accelerator; gathering batches by index and
augmenting them there avoids worker processes and host-to-device copies, which would otherwise
cost more than a small model's training step.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Iterator

import lightning
import torch
from torch import Tensor

from losslands.data.augment import normalize, random_crop_flip
from losslands.data.cifar10 import ensure_cifar10, read_cifar10
from losslands.data.synthetic import make_synthetic

Batch = tuple[Tensor, Tensor]
CROP_PADDING = 4


def epoch_seed(seed: int, epoch: int) -> int:
    """The generator seed for one epoch; distinct for every (seed, epoch < 100003) pair."""
    return seed * 100003 + epoch


class EpochSampler:
    """Holds the epoch number of a :class:`DeviceLoader`.

    Lightning 2.x calls ``set_epoch`` on a loader's ``.sampler`` before every training epoch
    (``FitLoop.on_advance_start`` -> ``lightning.fabric.utilities.data._set_sampler_epoch``,
    with ``epoch_progress.current.processed``, which a checkpoint restores), so a run resumed
    at epoch ``e`` draws the same batches as an uninterrupted one.
    """

    def __init__(self) -> None:
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)


class DeviceLoader:
    """Iterates ``(x float32 normalised, y int64)`` batches of uint8 tensors on their device.

    With ``shuffle``, each epoch visits a permutation drawn from a CPU ``torch.Generator``
    seeded by :func:`epoch_seed` ``(seed, epoch)``; with ``augment``, the same generator then
    draws each batch's crop offsets and flips (He et al. 2016, Sec. 4.2). Batches therefore
    depend only on ``(seed, epoch)``, identical on every device, and the global RNG is never
    used. The last batch may be smaller (no drop_last). ``x`` and ``y`` may be replaced (e.g.
    by :meth:`CIFAR10DataModule.to`) between epochs.

    Args:
        x: uint8 images ``[N, 3, H, W]``.
        y: int64 labels ``[N]``.
        batch_size: Images per batch.
        shuffle: Visit a fresh permutation every epoch instead of file order.
        augment: Random crop with 4-pixel zero padding, then random horizontal flip.
        seed: Base seed combined with the epoch.
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self.sampler = EpochSampler()
        # Lightning inspects ``batch_sampler`` when it looks for shuffling in eval loaders.
        self.batch_sampler = None

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose batches the next iteration yields."""
        self.sampler.set_epoch(epoch)

    def __len__(self) -> int:
        return math.ceil(self.x.shape[0] / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        # A generator function: nothing runs until the first batch is requested, so Lightning's
        # iter() probe is free and a set_epoch() after iter() still takes effect.
        x, y, n = self.x, self.y, self.x.shape[0]
        generator = None
        if self.shuffle or self.augment:
            generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.sampler.epoch))
        order = torch.randperm(n, generator=generator).to(x.device) if self.shuffle else None
        for start in range(0, n, self.batch_size):
            if order is None:
                xb, yb = x[start : start + self.batch_size], y[start : start + self.batch_size]
            else:
                idx = order[start : start + self.batch_size]
                xb, yb = x[idx], y[idx]
            if self.augment:
                xb = random_crop_flip(xb, CROP_PADDING, generator)
            yield normalize(xb), yb


def _subset(x: Tensor, y: Tensor, k: int | None, seed: int, key: str) -> tuple[Tensor, Tensor]:
    """The first ``k`` indices of a ``seed``-permutation, kept in file order."""
    if k is None:
        return x, y
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"{key}={k} must lie in 1..{x.shape[0]} (the split size), or be null")
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    idx = perm[:k].sort().values
    return x[idx], y[idx]


class CIFAR10DataModule(lightning.LightningDataModule):
    """CIFAR-10 train/test splits as single uint8 tensors with on-device batching.

    The test split doubles as the validation split. All arguments are plain values so Hydra can
    instantiate the module from the ``data`` config group.

    Args:
        root: Directory containing ``cifar-10-batches-py`` (``data.root``).
        download: Download the archive if files are missing (needs network).
        synthetic: Use :func:`make_synthetic` data instead of CIFAR-10 (tests, offline runs).
        synthetic_train: Synthetic training images.
        synthetic_test: Synthetic test images.
        batch_size: Training batch size.
        eval_batch_size: Batch size of validation/test loaders and :meth:`iter_batches`.
        train_subset: Keep this many training images (a ``subset_seed`` permutation), or None.
        val_subset: Keep this many test images likewise, or None.
        augment: Random crop + flip on training batches.
        seed: Job seed: training order and augmentation, per epoch.
        subset_seed: Seed of the subset permutations (fixed across jobs to compare runs).
        probe_seed: Seed of :meth:`probe_subset`, independent of ``seed``.
    """

    def __init__(
        self,
        root: str = "data",
        download: bool = False,
        synthetic: bool = False,
        synthetic_train: int = 2000,
        synthetic_test: int = 500,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        train_subset: int | None = None,
        val_subset: int | None = None,
        augment: bool = True,
        seed: int = 0,
        subset_seed: int = 0,
        probe_seed: int = 1234,
    ) -> None:
        super().__init__()
        for key, value in (
            ("data.batch_size", batch_size),
            ("data.eval_batch_size", eval_batch_size),
        ):
            if value < 1:
                raise ValueError(f"{key} must be >= 1, got {value}")
        self.save_hyperparameters()
        self.root, self.download, self.synthetic = root, download, synthetic
        self.synthetic_train, self.synthetic_test = synthetic_train, synthetic_test
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_subset, self.val_subset = train_subset, val_subset
        self.augment, self.seed = augment, seed
        self.subset_seed, self.probe_seed = subset_seed, probe_seed
        self.train_x: Tensor | None = None
        self.train_y: Tensor | None = None
        self.test_x: Tensor | None = None
        self.test_y: Tensor | None = None
        # Loaders handed out so far, so that to() can re-point them; weak to avoid keeping old ones.
        self._issued: weakref.WeakKeyDictionary[DeviceLoader, str] = weakref.WeakKeyDictionary()

    def prepare_data(self) -> None:
        """Download CIFAR-10 if it is missing and allowed (Lightning runs this on one process)."""
        if not self.synthetic:
            ensure_cifar10(self.root, self.download)

    def setup(self, stage: str | None = None) -> None:
        """Load both splits onto the CPU as uint8 tensors and apply the subsets; idempotent."""
        if self.train_x is not None:
            return
        if self.synthetic:
            train_x, train_y, test_x, test_y = make_synthetic(
                self.synthetic_train, self.synthetic_test
            )
        else:
            ensure_cifar10(self.root, self.download)
            train_x, train_y, test_x, test_y = read_cifar10(self.root)
        self.train_x, self.train_y = _subset(
            train_x, train_y, self.train_subset, self.subset_seed, "data.train_subset"
        )
        self.test_x, self.test_y = _subset(
            test_x, test_y, self.val_subset, self.subset_seed, "data.val_subset"
        )

    def _split(self, split: str) -> tuple[Tensor, Tensor]:
        if self.train_x is None:
            raise RuntimeError("call setup() before using the data")
        if split == "train":
            return self.train_x, self.train_y
        if split == "test":
            return self.test_x, self.test_y
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    @property
    def num_train(self) -> int:
        return int(self._split("train")[0].shape[0])

    @property
    def num_test(self) -> int:
        return int(self._split("test")[0].shape[0])

    def to(self, device: torch.device | str) -> CIFAR10DataModule:
        """Move both splits (and the loaders already handed out) to ``device``."""
        self._split("train")
        self.train_x, self.train_y = self.train_x.to(device), self.train_y.to(device)
        self.test_x, self.test_y = self.test_x.to(device), self.test_y.to(device)
        for loader, split in self._issued.items():
            loader.x, loader.y = self._split(split)
        return self

    def _loader(self, split: str, batch_size: int, train: bool) -> DeviceLoader:
        x, y = self._split(split)
        loader = DeviceLoader(
            x, y, batch_size, shuffle=train, augment=train and self.augment, seed=self.seed
        )
        self._issued[loader] = split
        return loader

    def train_dataloader(self) -> DeviceLoader:
        """Shuffled, augmented (if ``augment``) training batches; epoch set via ``.sampler``."""
        return self._loader("train", self.batch_size, train=True)

    def val_dataloader(self) -> DeviceLoader:
        """Test split in order, normalised, not augmented."""
        return self._loader("test", self.eval_batch_size, train=False)

    def test_dataloader(self) -> DeviceLoader:
        """Same batches as :meth:`val_dataloader`."""
        return self._loader("test", self.eval_batch_size, train=False)

    def iter_batches(self, split: str = "train", batch_size: int | None = None) -> Iterator[Batch]:
        """Unaugmented normalised batches over a whole split in order (for evaluation probes)."""
        x, y = self._split(split)
        return iter(DeviceLoader(x, y, batch_size or self.eval_batch_size))

    def probe_subset(self, n: int, index: int = 0) -> Batch:
        """A fixed, unaugmented, normalised subset of the (subset) training split.

        Subset ``index`` is ``perm[index * n : (index + 1) * n]`` of a permutation seeded by
        ``probe_seed`` alone, so it is the same for every optimizer and job seed, and distinct
        indices give disjoint subsets.

        Raises:
            ValueError: ``(index + 1) * n`` exceeds the training split.
        """
        x, y = self._split("train")
        if n < 1 or index < 0:
            raise ValueError(f"probe subset needs n >= 1 and index >= 0, got n={n}, index={index}")
        if (index + 1) * n > x.shape[0]:
            raise ValueError(
                f"probe subset {index} of {n} samples needs {(index + 1) * n} training images, "
                f"but the training split has {x.shape[0]}: lower probe.n_samples or raise (or "
                f"unset) data.train_subset"
            )
        perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(self.probe_seed))
        idx = perm[index * n : (index + 1) * n].to(x.device)
        return normalize(x[idx]), y[idx]
