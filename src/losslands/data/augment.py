"""Batch-wise CIFAR augmentation on whatever device the images live on.

The standard CIFAR recipe of He, Zhang, Ren, Sun (2016), "Deep Residual Learning for Image
Recognition", Sec. 4.2: pad 4 pixels of zeros, take a random 32x32 crop, flip horizontally with
probability 1/2. Every random draw comes from an explicit ``torch.Generator`` (never the global
RNG), so a training run's batches depend only on the seeds it was given. Draws are made on the
generator's device and then moved to the images' device: a CPU generator gives the same
augmentation whether the images are on the CPU or a GPU.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

# Per-channel mean and std of the CIFAR-10 training pixels on a 0..1 scale.
CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


def _require(generator: torch.Generator | None) -> torch.Generator:
    if generator is None:
        raise ValueError(
            "pass generator=torch.Generator().manual_seed(...): augmentation never uses the "
            "global RNG so that runs are reproducible"
        )
    return generator


def crop_offsets(n: int, padding: int, generator: torch.Generator) -> Tensor:
    """Top-left corners ``[n, 2]`` (row, col), uniform on ``0..2*padding`` like RandomCrop."""
    return torch.randint(0, 2 * padding + 1, (n, 2), generator=generator, device=generator.device)


def flip_mask(n: int, generator: torch.Generator) -> Tensor:
    """Which of ``n`` images to mirror: bool ``[n]``, each true with probability 1/2."""
    return torch.rand(n, generator=generator, device=generator.device) < 0.5


def crop_at(x: Tensor, offsets: Tensor, padding: int, flip: Tensor | None = None) -> Tensor:
    """Crop each zero-padded image of ``x [B, C, H, W]`` at ``offsets[b]``; mirror if ``flip[b]``.

    Image ``b`` becomes ``pad(x[b])[:, r_b : r_b + H, c_b : c_b + W]`` (its columns reversed
    where ``flip[b]``), computed for the whole batch as one gather on the flattened padded
    images: every crop is one index pattern shifted by ``r_b * W_pad + c_b``.
    """
    b, c, h, w = x.shape
    dev = x.device
    padded = F.pad(x, (padding, padding, padding, padding)).reshape(b, -1)
    hp, wp = h + 2 * padding, w + 2 * padding
    offsets = offsets.to(dev)
    rows = (
        torch.arange(c, device=dev).view(1, c, 1, 1) * (hp * wp)
        + torch.arange(h, device=dev).view(1, 1, h, 1) * wp
        + (offsets[:, 0] * wp + offsets[:, 1]).view(b, 1, 1, 1)
    )
    cols = torch.arange(w, device=dev).expand(b, w)
    if flip is not None:
        cols = torch.where(flip.to(dev)[:, None], cols.flip(-1), cols)
    index = (rows + cols.view(b, 1, 1, w)).view(b, -1)
    return padded.gather(1, index).view(b, c, h, w)


def random_crop(x: Tensor, padding: int = 4, generator: torch.Generator | None = None) -> Tensor:
    """Zero-pad by ``padding`` and crop back to the input size at a random offset per image.

    Matches torchvision's ``RandomCrop(32, padding=4)`` applied image by image.

    Args:
        x: Images ``[B, C, H, W]`` of any dtype.
        padding: Zero border added on each side before cropping.
        generator: Source of the offsets (required).
    """
    offsets = crop_offsets(x.shape[0], padding, _require(generator))
    return crop_at(x, offsets, padding)


def random_flip(x: Tensor, generator: torch.Generator | None = None) -> Tensor:
    """Mirror each image of ``x [B, C, H, W]`` left-right with probability 1/2."""
    flip = flip_mask(x.shape[0], _require(generator))
    return torch.where(flip.to(x.device)[:, None, None, None], x.flip(-1), x)


def random_crop_flip(
    x: Tensor, padding: int = 4, generator: torch.Generator | None = None
) -> Tensor:
    """``random_flip(random_crop(x, padding, g), g)`` in one gather: same draws, same result."""
    gen = _require(generator)
    offsets = crop_offsets(x.shape[0], padding, gen)
    return crop_at(x, offsets, padding, flip_mask(x.shape[0], gen))


def normalize(x: Tensor) -> Tensor:
    """uint8 images ``[..., 3, H, W]`` to float32 ``(x / 255 - mean) / std`` per channel.

    Raises:
        ValueError: ``x`` is not uint8 (guards against normalising twice).
    """
    if x.dtype != torch.uint8:
        raise ValueError(f"normalize expects uint8 images in 0..255, got dtype {x.dtype}")
    mean = torch.tensor(CIFAR10_MEAN, device=x.device).view(3, 1, 1)
    std = torch.tensor(CIFAR10_STD, device=x.device).view(3, 1, 1)
    # One affine map on the fresh float copy, in place: x * (1 / (255 std)) - mean / std.
    return x.float().mul_(1.0 / (255.0 * std)).sub_(mean / std)
