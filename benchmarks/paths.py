"""Cost of the path probes on the reference CNN, as ratios to one gradient evaluation.

    python benchmarks/paths.py [--samples 512] [--batch 128]

Side by side in one process on ``small_cnn`` (D = 183,242): one gradient of the mini-batch
loss (the baseline), one interpolation point (set weights + loss on the evaluation samples),
AutoNEB's setup plus first cycle and its second cycle alone (``steps`` NEB steps on mini-batches
for every pivot + the dense evaluation), one step of deterministic NEB, and a Bézier run. Then
the projection benchmark of ``benchmarks/subspace.py`` (fastfood vs dense at D = 183,242; time
and memory).
"""

from __future__ import annotations

import argparse
import os
import runpy
import sys
import time
from pathlib import Path

import torch
from torch import nn

from losslands.flat import flat_loss, get_flat
from losslands.models.small_cnn import SmallCNN
from losslands.paths import autoneb, bezier_curve, linear_interpolation, neb


def _data(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    root = os.environ.get("LOSSLANDS_CIFAR10_ROOT")
    if root and (Path(root) / "cifar-10-batches-py").is_dir():
        from losslands.data.datamodule import CIFAR10DataModule

        dm = CIFAR10DataModule(root=root)
        dm.setup()
        return dm.probe_subset(n)
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _time(fn, repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=5, help="NEB steps in the timed AutoNEB cycle")
    parser.add_argument("--skip-projections", action="store_true")
    args = parser.parse_args()
    torch.manual_seed(0)
    model_a, model_b = SmallCNN().eval(), SmallCNN().eval()
    a, b = get_flat(model_a), get_flat(model_b)
    x, y = _data(args.samples)
    loss_fn = nn.CrossEntropyLoss()
    batches = [(x[i : i + args.batch], y[i : i + args.batch]) for i in range(0, len(x), args.batch)]
    full = flat_loss(model_a, loss_fn, (x, y))
    per_batch = {i: flat_loss(model_a, loss_fn, bt) for i, bt in enumerate(batches)}

    def stochastic(theta, i):
        return per_batch[i](theta)

    def gradient():
        theta = a.clone().requires_grad_(True)
        per_batch[0](theta).backward()

    t_grad = _time(gradient)
    alphas = torch.linspace(0, 1, 11)  # holds 0 and 1, so nothing is added
    t_interp = _time(lambda: linear_interpolation(full, a, b, alphas=alphas)) / len(alphas)

    def run_autoneb(cycles: int) -> None:
        autoneb(
            stochastic,
            a,
            b,
            list(range(len(batches))),
            eval_loss=full,
            cycles=cycles,
            steps_per_cycle=args.steps,
            n_pivots_init=3,
            dense_points=3,
        )

    # one cycle = the difference of two runs, so the one-off setup (initial profile, force
    # scale, curvature bound) is not counted
    t_setup_and_cycle = _time(lambda: run_autoneb(1), repeats=1)
    t_cycle = _time(lambda: run_autoneb(2), repeats=1) - t_setup_and_cycle
    t_neb = (
        _time(lambda: neb(full, a, b, n_images=5, max_steps=2 * args.steps, tol=1e-12), repeats=1)
        - _time(lambda: neb(full, a, b, n_images=5, max_steps=args.steps, tol=1e-12), repeats=1)
    ) / args.steps
    t_bezier = _time(
        lambda: bezier_curve(
            stochastic, a, b, list(range(len(batches))), eval_loss=full, steps=args.steps, n_eval=3
        ),
        repeats=1,
    )
    rows = [
        ("gradient, 1 mini-batch (baseline)", t_grad),
        (f"interpolation point ({args.samples} samples; 11 points / 11)", t_interp),
        ("AutoNEB setup + first cycle", t_setup_and_cycle),
        (f"AutoNEB second cycle ({args.steps} steps per pivot + dense eval)", t_cycle),
        (f"NEB step, 5 images, full {args.samples}-sample loss", t_neb),
        (f"Bezier: {args.steps} steps + 3-point eval", t_bezier),
    ]
    print(
        f"small_cnn, D = {a.numel():,}, batch {args.batch}, {args.samples} evaluation samples, "
        f"{torch.get_num_threads()} threads"
    )
    print(f"{'what':<58}{'seconds':>10}{'x gradient':>12}")
    for name, t in rows:
        print(f"{name:<58}{t:>10.3f}{t / t_grad:>12.1f}")
    if not args.skip_projections:
        print("\nprojections (benchmarks/subspace.py):", flush=True)
        argv, sys.argv = sys.argv, [str(Path(__file__).with_name("subspace.py"))]
        try:  # subspace.py parses its own (default) arguments, not this script's
            runpy.run_path(sys.argv[0], run_name="__main__")
        finally:
            sys.argv = argv


if __name__ == "__main__":
    main()
