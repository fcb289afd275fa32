"""Per-layer spectra and Gauss-Newton vs Hessian on trained models, through the spectrum probe.

For each model (a SmallCNN ``model.pt``), ``probe=lanczos`` runs twice on the same disjoint
probe subsets (unaugmented CIFAR-10 training images, ``data.probe_seed``), through the notebook
API (:func:`losslands.probes.run`): once on the Hessian with ``blocks=layer`` (each layer's
diagonal block: extremes and trace), once on the generalised Gauss-Newton. Printed: the blocks'
lambda_max and trace ± s.e. against the full trace, and the top eigenvalues of H and G (the GGN
is positive semidefinite: its bottom eigenvalue must not fall below -tol·lambda_max).

Run: ``LOSSLANDS_CIFAR10_ROOT=... python benchmarks/layers_and_ggn.py --weights sgd=<cache>/<hash>/model.pt
momentum=... adamw=... [--samples 5000] [--subsets 2] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import math
import os
import time

import torch

from losslands.data.augment import normalize
from losslands.data.cifar10 import read_cifar10
from losslands.data.loader import TensorSplits
from losslands.models.small_cnn import SmallCNN
from losslands.probes import run


def _probe_images(n: int) -> tuple[torch.Tensor, torch.Tensor]:
    root = os.environ.get("LOSSLANDS_CIFAR10_ROOT")
    if not root:
        g = torch.Generator().manual_seed(0)
        return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)
    train_x, train_y, _, _ = read_cifar10(root)
    return TensorSplits((train_x, train_y), transform=normalize, probe_seed=1234).probe_subset(n, index=0)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", nargs="*", default=[], help="name=path/to/model.pt ...")
    parser.add_argument("--samples", type=int, default=512, help="images per subset")
    parser.add_argument("--subsets", type=int, default=2)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    args = parser.parse_args(argv)
    x, y = _probe_images(args.samples * args.subsets)
    options = dict(n_samples=args.samples, repeats=args.subsets, max_repeats=args.subsets, k=args.k,
                   half_check=False, slq_vectors=0, chunk_size=1000, device=args.device)
    where = torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU"
    print(f"# per-layer spectra and GGN vs Hessian: SmallCNN, {args.subsets} subsets x "
          f"{args.samples} images, k={args.k}, {where}, torch {torch.__version__}")
    for item in args.weights or ["init=random"]:
        name, _, path = item.partition("=")
        model = SmallCNN()
        if path != "random":
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        start = time.perf_counter()
        h = run("lanczos", model.eval(), train=(x, y), blocks="layer", **options)["result"]
        g = run("lanczos", model.eval(), train=(x, y), operator="ggn", **options)["result"]
        print(f"\n## {name} ({time.perf_counter() - start:.0f} s)")
        print("| block | parameters | lambda_max | trace ± s.e. |")
        print("|---|---|---|---|")
        total, var = 0.0, 0.0
        for b in h["blocks"]:  # the blocks of subset 0
            top = b["top"][0] if b["top"] else math.nan
            total, var = total + b["trace"], var + b["trace_stderr"] ** 2
            print(f"| {b['block']} | {b['dim']} | {top:.2f} | {b['trace']:.1f} ± {b['trace_stderr']:.1f} |")
        full = h["per_repeat"][0]
        print(f"| sum of blocks | | | {total:.1f} ± {math.sqrt(var):.1f} |")
        print(f"| whole Hessian (subset 0) | | {full['top'][0]:.2f} | {full['trace']:.1f} ± "
              f"{full['trace_stderr']:.1f} |")
        diff = (total - full["trace"]) / math.hypot(math.sqrt(var), full["trace_stderr"])
        print(f"blocks' sum - full trace = {diff:+.2f} standard errors")
        print(f"products by output (Hessian, {args.subsets} subsets + blocks): {h['matvecs_by_output']}; "
              f"per subset: {[r['matvecs_by_output'] for r in h['per_repeat']]}")
        fmt = ", ".join
        print(f"Hessian top-{args.k} (mean of subsets): {fmt(f'{v:.2f}' for v in h['top_mean'])}; "
              f"lambda_min {h['lambda_min']:.3g} (n={h['lambda_min_n']} certified)")
        print(f"GGN     top-{args.k} (mean of subsets): {fmt(f'{v:.2f}' for v in g['top_mean'])}; "
              f"bottom {fmt(f'{v:.2e}' for v in g['bottom_mean'])}; trace {g['trace']:.1f} ± "
              f"{g['trace_se']:.1f} vs Hessian {h['trace']:.1f} ± {h['trace_se']:.1f}")


if __name__ == "__main__":
    main()
