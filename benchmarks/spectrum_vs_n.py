"""How lambda_max and the trace of trained models move with the probe-subset size n.

For each model (a ``model.pt`` from the training cache) and each n, on the probe subsets the
spectrum probe uses (unaugmented CIFAR-10 training images, ``data.probe_seed``): lambda_max by
Lanczos (top end, eigenvalue-bound stopping) and the deflated trace ± standard error
(:func:`losslands.curvature.spectrum.spectrum`, k = 10), on ``--subsets`` disjoint subsets.
The table behind the probe's defaults (README, "Spectrum cost and size").

Run: ``LOSSLANDS_CIFAR10_ROOT=... python benchmarks/spectrum_vs_n.py --weights sgd=<cache>/<hash>/model.pt
momentum=... adamw=... [--ns 256 512 1024 2048] [--device cuda]``.
"""

from __future__ import annotations

import argparse
import math
import os
import time
import warnings

import torch
from torch import nn

from losslands.allocator import reuse_freed_memory
from losslands.curvature import HessianOperator
from losslands.curvature.spectrum import spectrum
from losslands.data.augment import normalize
from losslands.data.cifar10 import read_cifar10
from losslands.data.loader import TensorSplits
from losslands.models.small_cnn import SmallCNN
from losslands.probes.runner import exact_float32


def _splits(n_random: int) -> TensorSplits:
    root = os.environ.get("LOSSLANDS_CIFAR10_ROOT")
    if root:
        train_x, train_y, _, _ = read_cifar10(root)
        return TensorSplits((train_x, train_y), transform=normalize, probe_seed=1234)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (n_random, 3, 32, 32), generator=g, dtype=torch.uint8)
    return TensorSplits((x, torch.randint(0, 10, (n_random,), generator=g)), transform=normalize)


def _where(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--weights", nargs="*", default=[], help="name=path/to/model.pt ...")
    parser.add_argument("--ns", nargs="+", type=int, default=[256, 512, 1024, 2048])
    parser.add_argument("--subsets", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--tol", type=float, default=1e-3)
    parser.add_argument("--trace-samples", type=int, default=8)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--chunk-size", type=int, default=1000, help="images per backward pass")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as the CLI does by default (malloc_reuse): no page faults per product
    models = {}
    for item in args.weights or ["init=random"]:
        name, _, path = item.partition("=")
        model = SmallCNN()
        if path != "random":
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        models[name] = model.eval().to(device)
    data = _splits(max(args.ns) * args.subsets)
    print(f"# lambda_max and trace vs n: SmallCNN, k={args.k}, tol={args.tol}, "
          f"{args.subsets} disjoint subsets per n, {_where(device)}, torch {torch.__version__}")
    print("| model | n | lambda_max (per subset) | mean ± s.e. | trace ± s.e. (mean of subsets) | "
          "products | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name, model in models.items():
        for n in args.ns:
            tops, traces, ses, products, start = [], [], [], 0, time.perf_counter()
            for i in range(args.subsets):
                x, y = data.probe_subset(n, index=i)
                op = HessianOperator(model, nn.CrossEntropyLoss(), (x.to(device), y.to(device)),
                                     chunk_size=args.chunk_size)
                with warnings.catch_warnings(), exact_float32():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    res = spectrum(op, args.k, max_iters=150, tol=args.tol, certify_iters=0,
                                   trace_samples=args.trace_samples, slq_vectors=0, seed=i)
                tops.append(res.top[0])
                traces.append(res.trace)
                ses.append(res.trace_stderr)
                products += op.n_matvecs
            t = torch.tensor(tops, dtype=torch.float64)
            lam_se = float(t.std() / math.sqrt(len(tops))) if len(tops) > 1 else math.nan
            tr = torch.tensor(traces, dtype=torch.float64)
            tr_se = float(tr.std() / math.sqrt(len(traces))) if len(traces) > 1 else ses[0]
            print(f"| {name} | {n} | {', '.join(f'{v:.1f}' for v in tops)} | {float(t.mean()):.1f} ± "
                  f"{lam_se:.1f} | {float(tr.mean()):.0f} ± {tr_se:.0f} | {products} | "
                  f"{time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
