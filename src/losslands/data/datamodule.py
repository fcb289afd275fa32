"""The Lightning datamodules: thin wrappers over :class:`~losslands.data.loader.TensorSplits`
(whole tensors, batched on their device). CIFAR-10, CIFAR-100 and the synthetic stand-in are
uint8 images normalised per batch; ``data=tensors`` is a file of your own inputs and labels."""

from __future__ import annotations

from collections.abc import Iterator

import lightning
import torch
from torch import Tensor

from losslands.data.augment import normalize
from losslands.data.cifar10 import ensure_cifar10, read_cifar10
from losslands.data.cifar100 import ensure_cifar100, read_cifar100
from losslands.data.loader import Batch, DeviceLoader, TensorSplits, Transform, _subset
from losslands.data.synthetic import make_synthetic
from losslands.data.tensors import read_tensors, transform_for

# data.dataset -> (reader, download check, number of classes)
_CIFAR = {
    "cifar10": (read_cifar10, ensure_cifar10, 10),
    "cifar100": (read_cifar100, ensure_cifar100, 100),
}


class SplitsDataModule(lightning.LightningDataModule):
    """Train/test splits held whole as tensors, batched on their device; the test split doubles
    as the validation split. Subclasses say where the tensors come from (:meth:`_read`).

    Args:
        batch_size: Training batch size.
        eval_batch_size: Batch size of validation/test loaders and :meth:`iter_batches`.
        train_subset: Keep this many training samples (a ``subset_seed`` permutation), or None.
        val_subset: Keep this many test samples likewise, or None.
        augment: Random crop + flip on training batches (images ``[N, C, H, W]`` only).
        seed: Job seed: training order and augmentation, per epoch.
        subset_seed: Seed of the subset permutations (fixed across jobs to compare runs).
        probe_seed: Seed of :meth:`probe_subset`, independent of ``seed``.
    """

    def __init__(
        self,
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
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.train_subset, self.val_subset = train_subset, val_subset
        self.augment, self.seed = augment, seed
        self.subset_seed, self.probe_seed = subset_seed, probe_seed
        self.splits: TensorSplits | None = None

    def _read(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Transform | None]:
        """``(train_x, train_y, test_x, test_y, transform)`` on the CPU."""
        raise NotImplementedError

    def setup(self, stage: str | None = None) -> None:
        """Load both splits onto the CPU and apply the subsets; idempotent."""
        if self.splits is not None:
            return
        train_x, train_y, test_x, test_y, transform = self._read()
        if self.augment and train_x.dim() != 4:
            raise ValueError(f"data.augment=true crops and flips images [N, C, H, W], but the "
                             f"inputs have shape {list(train_x.shape)}: set data.augment=false")
        self.splits = TensorSplits(
            _subset(train_x, train_y, self.train_subset, self.subset_seed, "data.train_subset"),
            _subset(test_x, test_y, self.val_subset, self.subset_seed, "data.val_subset"),
            transform=transform,
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

    def to(self, device: torch.device | str) -> SplitsDataModule:
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


class CIFAR10DataModule(SplitsDataModule):
    """CIFAR-10 (or CIFAR-100, or the synthetic stand-in) as single uint8 tensors.

    All arguments are plain values so Hydra can instantiate the module from the ``data`` config
    group; see :class:`SplitsDataModule` for the batching ones.

    Args:
        root: Directory containing ``cifar-10-batches-py`` / ``cifar-100-python`` (``data.root``).
        download: Download the archive if files are missing (needs network).
        synthetic: Use :func:`make_synthetic` data instead of CIFAR-10 (tests, offline runs).
        synthetic_train: Synthetic training images.
        synthetic_test: Synthetic test images.
        dataset: ``cifar10`` or ``cifar100`` (fine labels).
        num_classes: The number of classes the config expects, checked against the dataset's.
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
        dataset: str = "cifar10",
        num_classes: int | None = None,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, train_subset, val_subset, augment, seed,
                         subset_seed, probe_seed)
        if dataset not in _CIFAR:
            raise ValueError(f"data.dataset={dataset!r} must be one of {tuple(_CIFAR)}")
        classes = 10 if synthetic else _CIFAR[dataset][2]
        if num_classes is not None and num_classes != classes:
            raise ValueError(f"data.num_classes={num_classes}, but "
                             f"{'synthetic data' if synthetic else dataset} has {classes} classes")
        self.save_hyperparameters()
        self.root, self.download, self.synthetic = root, download, synthetic
        self.synthetic_train, self.synthetic_test = synthetic_train, synthetic_test
        self.dataset, self.num_classes = dataset, classes

    def prepare_data(self) -> None:
        """Download the dataset if missing and allowed (Lightning runs this on one process)."""
        if not self.synthetic:
            _CIFAR[self.dataset][1](self.root, self.download)

    def _read(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Transform | None]:
        if self.synthetic:
            return (*make_synthetic(self.synthetic_train, self.synthetic_test), normalize)
        read, ensure, _ = _CIFAR[self.dataset]
        ensure(self.root, self.download)
        return (*read(self.root), normalize)


class TensorsDataModule(SplitsDataModule):
    """Your own inputs and labels from one ``.pt``/``.npz`` file (``data=tensors``), see
    :mod:`losslands.data.tensors`; model inputs are standardised with the file's ``mean``/``std``
    when it has them, else used as float32.

    Args:
        path: The file (``data.path``).
        num_classes: Labels must lie in ``0..num_classes-1`` (``data.num_classes``).
        augment: Random crop + flip (image inputs only; off by default).
    """

    def __init__(
        self,
        path: str,
        num_classes: int,
        batch_size: int = 128,
        eval_batch_size: int = 1000,
        train_subset: int | None = None,
        val_subset: int | None = None,
        augment: bool = False,
        seed: int = 0,
        subset_seed: int = 0,
        probe_seed: int = 1234,
    ) -> None:
        super().__init__(batch_size, eval_batch_size, train_subset, val_subset, augment, seed,
                         subset_seed, probe_seed)
        self.save_hyperparameters()
        self.path, self.num_classes = path, int(num_classes)

    def prepare_data(self) -> None:
        """Nothing to download."""

    def _read(self) -> tuple[Tensor, Tensor, Tensor, Tensor, Transform | None]:
        data = read_tensors(self.path, self.num_classes)
        return data.train_x, data.train_y, data.test_x, data.test_y, transform_for(data)
