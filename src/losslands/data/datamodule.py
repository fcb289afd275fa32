"""The Lightning datamodule: CIFAR-10 (or its synthetic stand-in) as a thin wrapper over
:class:`~losslands.data.loader.TensorSplits` (whole uint8 tensors, batched on their device)."""

from __future__ import annotations

from collections.abc import Iterator

import lightning
import torch
from torch import Tensor

from losslands.data.cifar10 import ensure_cifar10, read_cifar10
from losslands.data.loader import Batch, DeviceLoader, TensorSplits, _subset
from losslands.data.synthetic import make_synthetic


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
        self.splits: TensorSplits | None = None

    def prepare_data(self) -> None:
        """Download CIFAR-10 if it is missing and allowed (Lightning runs this on one process)."""
        if not self.synthetic:
            ensure_cifar10(self.root, self.download)

    def setup(self, stage: str | None = None) -> None:
        """Load both splits onto the CPU as uint8 tensors and apply the subsets; idempotent."""
        if self.splits is not None:
            return
        if self.synthetic:
            train_x, train_y, test_x, test_y = make_synthetic(
                self.synthetic_train, self.synthetic_test
            )
        else:
            ensure_cifar10(self.root, self.download)
            train_x, train_y, test_x, test_y = read_cifar10(self.root)
        self.splits = TensorSplits(
            _subset(train_x, train_y, self.train_subset, self.subset_seed, "data.train_subset"),
            _subset(test_x, test_y, self.val_subset, self.subset_seed, "data.val_subset"),
            probe_seed=self.probe_seed,
        )

    def _data(self) -> TensorSplits:
        if self.splits is None:
            raise RuntimeError("call setup() before using the data")
        return self.splits

    # The splits' tensors, read by training code and tests.
    train_x = property(lambda self: self._data().train_x)
    train_y = property(lambda self: self._data().train_y)
    test_x = property(lambda self: self._data().test_x)
    test_y = property(lambda self: self._data().test_y)

    @property
    def num_train(self) -> int:
        return self._data().num_train

    @property
    def num_test(self) -> int:
        return self._data().num_test

    def to(self, device: torch.device | str) -> CIFAR10DataModule:
        """Move both splits (and the loaders already handed out) to ``device``."""
        self._data().to(device)
        return self

    def train_dataloader(self) -> DeviceLoader:
        """Shuffled, augmented (if ``augment``) training batches; epoch set via ``.sampler``."""
        return self._data().loader(
            "train", self.batch_size, shuffle=True, augment=self.augment, seed=self.seed
        )

    def val_dataloader(self) -> DeviceLoader:
        """Test split in order, normalised, not augmented."""
        return self._data().loader("test", self.eval_batch_size, seed=self.seed)

    def test_dataloader(self) -> DeviceLoader:
        """Same batches as :meth:`val_dataloader`."""
        return self.val_dataloader()

    def iter_batches(self, split: str = "train", batch_size: int | None = None) -> Iterator[Batch]:
        """Unaugmented normalised batches over a whole split in order (for evaluation)."""
        return self._data().iter_batches(split, batch_size or self.eval_batch_size)

    def probe_subset(self, n: int, index: int = 0) -> tuple[Tensor, Tensor]:
        """See :meth:`TensorSplits.probe_subset`."""
        return self._data().probe_subset(n, index)
