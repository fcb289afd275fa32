"""Training throughput of SmallCNN on CIFAR-10: losslands vs a plain loop vs torchvision.

Three pipelines train the same freshly initialised SmallCNN (same seed) with SGD (lr 0.01,
momentum 0.9, weight decay 5e-4) on the same device and batch size:

1. ``losslands``: ``CIFAR10DataModule.train_dataloader()`` (device-resident uint8 data, crop +
   flip on the device) into ``Classifier`` driven by a real ``lightning.Trainer``;
2. ``plain``: the same DeviceLoader batches into a hand-written PyTorch loop (the overhead
   baseline);
3. ``reference``: torchvision ``CIFAR10`` + per-image PIL transforms through a ``DataLoader``
   with two workers, into the same hand-written loop.

Every pipeline is timed over the same number of full steps after the same warm-up, including
fetching its batches; repeats are interleaved (1 2 3 1 2 3 ...) and ratios are the median of the
per-repeat ratios, so slow phases of a shared machine hit all pipelines alike. The data paths
alone (no model) are timed the same way. Standard augmentation: He, Zhang, Ren, Sun (2016),
"Deep Residual Learning for Image Recognition", Sec. 4.2.

Usage::

    python benchmarks/train_throughput.py --data-root /path/holding/cifar-10-batches-py
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
import warnings
from collections.abc import Iterator
from itertools import pairwise

import lightning as L
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from losslands.data.augment import CIFAR10_MEAN, CIFAR10_STD
from losslands.data.datamodule import CIFAR10DataModule
from losslands.flat import get_flat
from losslands.models.small_cnn import SmallCNN
from losslands.training.module import Classifier

LR, MOMENTUM, WEIGHT_DECAY = 0.01, 0.9, 5e-4
REFERENCE_WORKERS = 2
PLAIN_TARGET = 0.97  # losslands / plain, on a CPU
REFERENCE_TARGET = 5.0  # losslands / reference, on a GPU
Batch = tuple[Tensor, Tensor]


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data-root",
        default=os.environ.get("LOSSLANDS_CIFAR10_ROOT"),
        help="directory holding cifar-10-batches-py (default: $LOSSLANDS_CIFAR10_ROOT; "
        "without either, synthetic CIFAR-shaped data and no reference pipeline)",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="timed steps per run (default: 60 on a GPU, 15 on a CPU)",
    )
    p.add_argument(
        "--warmup",
        type=int,
        default=None,
        help="untimed steps first (default: 10 on a GPU, 3 on a CPU)",
    )
    p.add_argument(
        "--repeats", type=int, default=3, help="interleaved repeats; medians are reported"
    )
    p.add_argument(
        "--data-batches",
        type=int,
        default=None,
        help="batches per data-path timing (default: 2x steps)",
    )
    p.add_argument(
        "--threads", type=int, default=None, help="torch.set_num_threads (default: torch's)"
    )
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args()
    for key in ("batch_size", "steps", "warmup", "repeats", "data_batches", "threads"):
        value = getattr(args, key)
        if value is not None and value < 1:
            raise ValueError(f"--{key.replace('_', '-')} must be >= 1, got {value}")
    return args


def pick_device(name: str) -> torch.device:
    if name != "auto":
        return torch.device(name)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def sync(device: torch.device) -> None:
    """Wait for queued kernels, so that a clock read covers the work issued before it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def fresh_model(seed: int, device: torch.device) -> nn.Module:
    """SmallCNN with the initial weights of ``seed``, leaving the global RNG as it was."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = SmallCNN()
    return model.to(device)


def sgd(params) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=LR, momentum=MOMENTUM, weight_decay=WEIGHT_DECAY)


# --- the three pipelines: each returns (clock reads, trained model) -------------------------------


def _stamp(stamps: list[float], device: torch.device, warmup: int, steps: int) -> None:
    """Append the time at the end of step ``len(stamps) + 1``.

    The device is synchronised only at the ends of step ``warmup`` and of the last step, which
    bound the timed window; per-step reads in between are exact only where kernels run
    synchronously (the CPU).
    """
    if len(stamps) + 1 in (warmup, warmup + steps):
        sync(device)
    stamps.append(time.perf_counter())


class _StepClock(L.Callback):
    """Clock reads at the end of every training step, for :func:`rates`.

    All reads sit at the same point of the loop, so the window from the end of step ``warmup``
    to the end of step ``warmup + steps`` holds exactly ``steps`` whole iterations (batch fetch,
    hooks, forward, backward, optimizer step) and none of the Trainer's start-up or tear-down.
    """

    def __init__(self, device: torch.device, warmup: int, steps: int) -> None:
        self.device, self.warmup, self.steps = device, warmup, steps
        self.stamps: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        _stamp(self.stamps, self.device, self.warmup, self.steps)


def rates(stamps: list[float], args) -> tuple[float, float]:
    """Images/s over the timed window, and from its median step (robust to load bursts)."""
    window = stamps[args.warmup - 1 : args.warmup + args.steps]
    steps = [b - a for a, b in pairwise(window)]
    return (
        args.batch_size * args.steps / (window[-1] - window[0]),
        args.batch_size / statistics.median(steps),
    )


def _accelerator(device: torch.device) -> dict:
    if device.type == "cuda":
        return {"accelerator": "gpu", "devices": [device.index or 0]}
    return {"accelerator": device.type, "devices": 1}


def run_losslands(
    dm: CIFAR10DataModule, args, device: torch.device
) -> tuple[list[float], nn.Module]:
    model = fresh_model(args.seed, device)
    module = Classifier(model, sgd)
    clock = _StepClock(device, args.warmup, args.steps)
    trainer = L.Trainer(
        **_accelerator(device),
        precision="32-true",
        max_steps=args.warmup + args.steps,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[clock],
    )
    trainer.fit(module, datamodule=dm)
    if len(clock.stamps) != args.warmup + args.steps:
        raise RuntimeError(
            f"the Trainer ran {len(clock.stamps)} steps, expected {args.warmup + args.steps}"
        )
    return clock.stamps, model


def _timed_loop(
    batches: Iterator[Batch], args, device: torch.device
) -> tuple[list[float], nn.Module]:
    """The hand-written training loop shared by the plain and reference pipelines."""
    model = fresh_model(args.seed, device).train()
    opt = sgd(model.parameters())

    stamps: list[float] = []
    for _ in range(args.warmup + args.steps):
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        opt.step()
        _stamp(stamps, device, args.warmup, args.steps)
    return stamps, model


def run_plain(dm: CIFAR10DataModule, args, device: torch.device) -> tuple[list[float], nn.Module]:
    loader = dm.train_dataloader()
    loader.set_epoch(0)  # the epoch the Trainer's first epoch draws, so both see equal batches
    return _timed_loop(iter(loader), args, device)


class _PILImages(torch.utils.data.Dataset):
    """What torchvision's ``CIFAR10`` yields per item: a PIL image through ``transform``, a label."""

    def __init__(self, x: Tensor, y: Tensor, transform) -> None:
        self.images = x.permute(0, 2, 3, 1).contiguous().numpy()  # HWC, the layout PIL reads
        self.labels = y.tolist()
        self.transform = transform

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        from PIL import Image

        return self.transform(Image.fromarray(self.images[i])), self.labels[i]


def reference_dataset(root: str, dm: CIFAR10DataModule):
    """torchvision ``CIFAR10`` with the standard transforms.

    torchvision accepts only files whose md5 matches the official release; for a re-saved copy
    the same per-image PIL path runs on the arrays losslands read (a note says so).
    """
    from torchvision import datasets, transforms

    transform = transforms.Compose(
        [
            transforms.RandomCrop(32, padding=4),
            transforms.RandomHorizontalFlip(),
            transforms.ToTensor(),
            transforms.Normalize(CIFAR10_MEAN, CIFAR10_STD),
        ]
    )
    try:
        return datasets.CIFAR10(root, train=True, transform=transform, download=False)
    except RuntimeError as err:
        print(
            f"note: torchvision.datasets.CIFAR10 refused {root} ({err}); the reference runs "
            f"the same per-image PIL transforms on the images losslands read instead"
        )
        return _PILImages(dm.train_x.cpu(), dm.train_y.cpu(), transform)


def reference_loader(dataset, args, device: torch.device) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=args.batch_size,
        shuffle=True,
        num_workers=REFERENCE_WORKERS,
        pin_memory=device.type == "cuda",  # the usual setting for a GPU, and its faster copy
        generator=torch.Generator().manual_seed(args.seed),
    )


def run_reference(dataset, args, device: torch.device) -> tuple[list[float], nn.Module]:
    batches = iter(reference_loader(dataset, args, device))
    try:
        return _timed_loop(batches, args, device)
    finally:
        del batches  # stops the worker processes before the next pipeline runs


# --- data paths alone: batches per second ----------------------------------------------------------


def _time_batches(batches: Iterator[Batch], n: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        next(batches)
    sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        x, y = next(batches)
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
    sync(device)
    return n / (time.perf_counter() - t0)


def data_device_loader(dm: CIFAR10DataModule, args, device: torch.device) -> float:
    loader = dm.train_dataloader()
    loader.set_epoch(0)
    return _time_batches(iter(loader), args.data_batches, args.warmup, device)


def data_reference(dataset, args, device: torch.device) -> float:
    batches = iter(reference_loader(dataset, args, device))
    try:
        return _time_batches(batches, args.data_batches, args.warmup, device)
    finally:
        del batches


# --- driver ----------------------------------------------------------------------------------------


def _row(label: str, median: str, per_repeat: str, target: str = "") -> None:
    print(f"{label:<34}{median:>9}  {per_repeat:<24}{target}".rstrip())


def _stats(values: list[float], digits: int = 1) -> tuple[str, str]:
    """Median and the per-repeat values, formatted."""
    per = " ".join(f"{v:.{digits}f}" for v in values)
    return f"{statistics.median(values):.{digits}f}", per


def _paired(values: dict[str, list[float]], base: str, top: str = "losslands") -> list[float]:
    """``top / base`` within each repeat (both ran back to back, under similar load)."""
    return [a / b for a, b in zip(values[top], values[base], strict=True)]


def _ratio(
    ips: dict[str, list[float]], base: str, target: float, target_device: str, device: torch.device
) -> tuple[str, str, str]:
    paired = _paired(ips, base)
    met = "met" if statistics.median(paired) >= target else "NOT met"
    scope = (
        "" if device.type == target_device else f" (a {target_device} target; ran on {device.type})"
    )
    return (*_stats(paired, 3), f">= {target:g}x: {met}{scope}")


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    device = pick_device(args.device)
    on_cpu = device.type == "cpu"
    args.steps = args.steps or (15 if on_cpu else 60)
    args.warmup = args.warmup or (3 if on_cpu else 10)
    args.data_batches = args.data_batches or 2 * args.steps
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    # Lightning's start-up banners (accelerator, TPU, ...) would repeat for every run.
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")

    need = args.warmup + args.steps
    synthetic = args.data_root is None
    if synthetic:
        print(
            "note: no --data-root and no LOSSLANDS_CIFAR10_ROOT: synthetic CIFAR-shaped data, "
            "and the reference (torchvision) pipeline is skipped"
        )
    dm = CIFAR10DataModule(
        root=args.data_root or "data",
        synthetic=synthetic,
        synthetic_train=max(need, args.warmup + args.data_batches) * args.batch_size,
        synthetic_test=args.batch_size,
        batch_size=args.batch_size,
        augment=True,
        seed=args.seed,
    )
    dm.prepare_data()
    dm.setup()
    dataset = None if synthetic else reference_dataset(args.data_root, dm)
    dm.to(device)
    per_epoch = len(dm.train_dataloader())
    if max(need, args.warmup + args.data_batches) > per_epoch:
        raise ValueError(
            f"--warmup + --steps ({need}) and --warmup + --data-batches "
            f"({args.warmup + args.data_batches}) must fit in one epoch of {per_epoch} batches "
            f"(epoch ends add work to only one pipeline): lower them or raise --batch-size"
        )

    print(
        f"device {device} | torch {torch.__version__} | lightning {L.__version__} | "
        f"threads {threads} | batch {args.batch_size} | warm-up {args.warmup} + timed "
        f"{args.steps} steps | {args.repeats} interleaved repeats | data "
        f"{'synthetic' if synthetic else args.data_root} ({dm.num_train} train images)"
    )
    print(
        "losslands is timed inside lightning.Trainer.fit by a callback, from on_train_batch_end "
        "of the last warm-up step to on_train_batch_end of the last timed step (Trainer "
        "start-up excluded); the loops are timed over the same steps, batch fetching included"
    )

    train = {
        "losslands": lambda: run_losslands(dm, args, device),
        "plain": lambda: run_plain(dm, args, device),
    }
    data = {"DeviceLoader": lambda: data_device_loader(dm, args, device)}
    if dataset is not None:
        train["reference"] = lambda: run_reference(dataset, args, device)
        data["DataLoader"] = lambda: data_reference(dataset, args, device)
    window_ips = {name: [] for name in train}
    step_ips = {name: [] for name in train}
    batches_ps = {name: [] for name in data}
    same_work = float("nan")
    for r in range(args.repeats):
        models = {}
        for name, trial in train.items():
            torch.set_num_threads(threads)
            stamps, models[name] = trial()
            window, step = rates(stamps, args)
            window_ips[name].append(window)
            step_ips[name].append(step)
        for name, trial in data.items():
            torch.set_num_threads(threads)
            batches_ps[name].append(trial())
        if r == 0:
            # The Trainer and the plain loop saw the same batches from the same weights.
            diff = get_flat(models["losslands"]) - get_flat(models["plain"])
            same_work = diff.abs().max().item()
        done = {**window_ips, **batches_ps}
        print(f"  repeat {r + 1}: " + ", ".join(f"{k} {v[-1]:.1f}" for k, v in done.items()))

    print()
    _row("", "median", "per repeat")
    _row("losslands (Trainer) img/s", *_stats(window_ips["losslands"]))
    _row("plain loop img/s", *_stats(window_ips["plain"]))
    if dataset is not None:
        _row("reference img/s", *_stats(window_ips["reference"]))
    _row("DeviceLoader batches/s", *_stats(batches_ps["DeviceLoader"]))
    if dataset is not None:
        _row(
            f"DataLoader ({REFERENCE_WORKERS} workers) batches/s", *_stats(batches_ps["DataLoader"])
        )

    print()
    _row("ratio (median of per-repeat)", "median", "per repeat", "target")
    _row("losslands / plain", *_ratio(window_ips, "plain", PLAIN_TARGET, "cpu", device))
    if dataset is None:
        print("losslands / reference: skipped (no CIFAR-10 root)")
    else:
        _row(
            "losslands / reference",
            *_ratio(window_ips, "reference", REFERENCE_TARGET, "cuda", device),
        )
        paired = _paired(batches_ps, "DataLoader", top="DeviceLoader")
        _row("DeviceLoader / DataLoader", *_stats(paired, 3))
    if device.type == "cpu":
        # Per-step reads are exact only on the CPU (no asynchronous kernels).
        print("by median step time (robust to bursts of load from other processes):")
        _row("  losslands / plain", *_ratio(step_ips, "plain", PLAIN_TARGET, "cpu", device))
        if dataset is not None:
            _row("  losslands / reference", *_stats(_paired(step_ips, "reference"), 3))

    print()
    print(f"same work: max |theta_losslands - theta_plain| after repeat 1 = {same_work:.3g}")
    print(f"total wall time {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
