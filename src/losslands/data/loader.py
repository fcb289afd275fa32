"""Pure-torch data access: whole splits held as tensors on one device, batched there.

CIFAR-10 is 150 MB as uint8, so it fits on any accelerator; gathering batches by index and
augmenting them there avoids worker processes and host-to-device copies, which would otherwise
cost more than a small model's training step. :class:`TensorSplits` is what probes see (train and
test splits, fixed probe subsets, shuffled or in-order batches); the Lightning datamodule is a
thin wrapper over it. Nothing here imports Lightning.
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Callable, Iterator

import torch
from torch import Tensor

from losslands.data.augment import normalize, random_crop_flip

Batch = tuple[Tensor, Tensor]
CROP_PADDING = 4
Transform = Callable[[Tensor], Tensor]


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
    by :meth:`TensorSplits.to`) between epochs.

    Args:
        x: uint8 images ``[N, 3, H, W]``.
        y: int64 labels ``[N]``.
        batch_size: Images per batch.
        shuffle: Visit a fresh permutation every epoch instead of file order.
        augment: Random crop with 4-pixel zero padding, then random horizontal flip.
        seed: Base seed combined with the epoch.
        transform: Maps a stored batch to model inputs (default: :func:`normalize` of uint8
            CIFAR images; ``None`` for inputs stored ready to use).
    """

    def __init__(
        self,
        x: Tensor,
        y: Tensor,
        batch_size: int,
        shuffle: bool = False,
        augment: bool = False,
        seed: int = 0,
        transform: Transform | None = normalize,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if x.shape[0] != y.shape[0]:
            raise ValueError(f"{x.shape[0]} images but {y.shape[0]} labels")
        self.x, self.y = x, y
        self.batch_size = int(batch_size)
        self.shuffle, self.augment, self.seed = shuffle, augment, seed
        self.transform = transform
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
            yield (xb if self.transform is None else self.transform(xb)), yb


def _subset(x: Tensor, y: Tensor, k: int | None, seed: int, key: str) -> tuple[Tensor, Tensor]:
    """The first ``k`` indices of a ``seed``-permutation, kept in file order."""
    if k is None:
        return x, y
    if not 1 <= k <= x.shape[0]:
        raise ValueError(f"{key}={k} must lie in 1..{x.shape[0]} (the split size), or be null")
    perm = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(seed))
    idx = perm[:k].sort().values
    return x[idx], y[idx]


class EpochBatches:
    """Re-iterable over a :class:`DeviceLoader`: every pass draws the next epoch's order.

    A plain loader repeats epoch 0 on every pass; methods that cycle through their batches
    (AutoNEB, Bézier curves, subspace training) should see fresh shuffles instead.
    """

    def __init__(self, loader: DeviceLoader) -> None:
        self.loader = loader
        self._epoch = 0

    def __len__(self) -> int:
        return len(self.loader)

    def __iter__(self) -> Iterator[Batch]:
        # A generator: the epoch is only claimed when the first batch is requested.
        self.loader.set_epoch(self._epoch)
        self._epoch += 1
        yield from self.loader


class TensorSplits:
    """Train and test splits as whole tensors on one device: the data access of probes.

    Args:
        train: ``(inputs, integer labels)`` of the training split.
        test: the same for the test split, or ``None``.
        transform: maps stored inputs to model inputs (see :class:`DeviceLoader`).
        probe_seed: seed of the permutation behind :meth:`probe_subset`.
    """

    def __init__(
        self,
        train: Batch,
        test: Batch | None = None,
        *,
        transform: Transform | None = normalize,
        probe_seed: int = 1234,
    ) -> None:
        self.train_x, self.train_y = _pair(train, "train")
        self.test_x, self.test_y = _pair(test, "test") if test is not None else (None, None)
        self.transform = transform
        self.probe_seed = probe_seed
        # Loaders handed out so far, so that to() can re-point them; weak to avoid keeping old ones.
        self._issued: weakref.WeakKeyDictionary[DeviceLoader, str] = weakref.WeakKeyDictionary()

    def split(self, split: str) -> Batch:
        """The stored ``(x, y)`` of ``"train"`` or ``"test"``."""
        if split == "train":
            return self.train_x, self.train_y
        if split == "test":
            if self.test_x is None:
                raise ValueError("no test split was given: pass test=(x, y)")
            return self.test_x, self.test_y
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")

    @property
    def num_train(self) -> int:
        return int(self.train_x.shape[0])

    @property
    def num_test(self) -> int:
        return 0 if self.test_x is None else int(self.test_x.shape[0])

    def to(self, device: torch.device | str) -> TensorSplits:
        """Move both splits (and the loaders already handed out) to ``device``."""
        self.train_x, self.train_y = self.train_x.to(device), self.train_y.to(device)
        if self.test_x is not None:
            self.test_x, self.test_y = self.test_x.to(device), self.test_y.to(device)
        for loader, split in self._issued.items():
            loader.x, loader.y = self.split(split)
        return self

    def loader(
        self, split: str, batch_size: int, *, shuffle: bool = False, augment: bool = False,
        seed: int = 0, n: int | None = None,
    ) -> DeviceLoader:
        """Batches of a split (its first ``n`` samples when given), re-pointed by :meth:`to`."""
        x, y = self.split(split)
        if n is not None:
            if not 1 <= n <= x.shape[0]:
                raise ValueError(f"{n} {split} samples requested, the {split} split has {x.shape[0]}")
            x, y = x[:n], y[:n]
        loader = DeviceLoader(
            x, y, batch_size, shuffle=shuffle, augment=augment, seed=seed, transform=self.transform
        )
        if n is None:
            self._issued[loader] = split
        return loader

    def iter_batches(self, split: str = "train", batch_size: int = 1000) -> Iterator[Batch]:
        """Unaugmented model-ready batches over a whole split, in order."""
        return iter(self.loader(split, batch_size))

    def probe_subset(self, n: int, index: int = 0) -> Batch:
        """A fixed, unaugmented, model-ready subset of the training split.

        Subset ``index`` is ``perm[index * n : (index + 1) * n]`` of a permutation seeded by
        ``probe_seed`` alone, so it is the same for every optimizer and job seed, and distinct
        indices give disjoint subsets.

        Raises:
            ValueError: ``(index + 1) * n`` exceeds the training split.
        """
        x, y = self.split("train")
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
        xb = x[idx]
        return (xb if self.transform is None else self.transform(xb)), y[idx]


def _pair(data: Batch, name: str) -> Batch:
    x, y = data
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"{name} must be a pair of tensors (inputs, labels)")
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"{name}: {x.shape[0]} inputs but {y.shape[0]} labels")
    if y.dtype.is_floating_point or y.dim() != 1:
        raise ValueError(f"{name} labels must be a 1-D integer tensor, got {y.dtype} {tuple(y.shape)}")
    return x, y
