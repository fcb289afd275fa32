"""How lambda_max and the trace of trained models move with the probe-subset size n.

For each model (a ``model.pt`` from the training cache) and each n, on the probe subsets the
spectrum probe uses (unaugmented CIFAR-10 training images, ``data.probe_seed``): lambda_max by
Lanczos (top end, eigenvalue-bound stopping) and the deflated trace ± standard error
(:func:`losslands.curvature.spectrum.spectrum`, k = 10), on ``--subsets`` disjoint subsets.
The table behind the probe's defaults (README, "Spectrum cost and size").

Run: ``LOSSLANDS_CIFAR10_ROOT=... python benchmarks/spectrum_vs_n.py --weights sgd=<cache>/<hash>/model.pt
momentum=... adamw=... [--ns 256 512 1024 2048] [--device cuda] [--out rows.jsonl]``.

With ``--out``, each finished subset is appended to a JSON-lines file and subsets already there
(same data, weights file contents, n, subset, k, tol, trace samples) are not computed again: a killed
or time-limited run resumes, and runs on different machines add to one table. Subsets go in the
order n, subset, model, so a partial run covers every model at the smaller n first.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import time
import warnings
from pathlib import Path

import torch
from torch import nn

from losslands.allocator import reuse_freed_memory
from losslands.curvature import HessianOperator
from losslands.curvature.operators import METHODS
from losslands.curvature.spectrum import spectrum
from losslands.data.augment import normalize
from losslands.data.cifar10 import read_cifar10
from losslands.data.loader import TensorSplits
from losslands.io import write_text
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


def _digest(path: str) -> str:
    return "random-init-seed0" if path == "random" else hashlib.sha256(Path(path).read_bytes()).hexdigest()[:16]


def _load_rows(path: Path | None) -> list[dict]:
    """Rows of an earlier run; a last line cut short by a kill is dropped, any other bad line raises."""
    if path is None or not path.exists():
        return []
    text = path.read_text()
    lines = text.splitlines()
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise ValueError(f"{path}:{i + 1} is not JSON; fix or delete that line") from None
            print(f"# {path}: dropped a last line cut short ({len(line)} characters)")
    if text and not text.endswith("\n"):  # rewritten whole, or the next append would join it
        body = "".join(json.dumps(r) + "\n" for r in rows)
        write_text(path, body)
    return rows


def _append(path: Path, row: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(row) + "\n")
        f.flush()
        os.fsync(f.fileno())


KEY = ("data", "weights_sha", "n", "subset", "k", "tol", "trace_samples")  # what a row measures


def _key(row: dict) -> tuple:
    return tuple(row[f] for f in KEY)


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
    parser.add_argument("--method", default="auto", choices=METHODS, help="Hessian-product method")
    parser.add_argument("--out", type=Path, default=None,
                        help="JSON-lines file of finished subsets: appended to, and resumed from")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    reuse_freed_memory()  # as the CLI does by default (malloc_reuse): no page faults per product
    models, digests = {}, {}
    for item in args.weights or ["init=random"]:
        name, _, path = item.partition("=")
        torch.manual_seed(0)  # "random": the same initialisation in every run, as its key says
        model = SmallCNN()
        if path != "random":
            model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
        models[name], digests[name] = model.eval().to(device), _digest(path)
    n_random = max(args.ns) * args.subsets
    data = _splits(n_random)
    data_id = "cifar10" if os.environ.get("LOSSLANDS_CIFAR10_ROOT") else f"random-{n_random}"
    where = _where(device)
    print(f"# lambda_max and trace vs n: SmallCNN, k={args.k}, tol={args.tol}, "
          f"{args.subsets} disjoint subsets per n, {where}, torch {torch.__version__}")
    rows = _load_rows(args.out)
    done = {_key(r): r for r in rows}
    def ident(name: str, n: int, i: int) -> dict:
        return {"data": data_id, "weights_sha": digests[name], "n": n, "subset": i, "k": args.k,
                "tol": args.tol, "trace_samples": args.trace_samples}

    for n in args.ns:
        for i in range(args.subsets):
            for name, model in models.items():
                key = _key(ident(name, n, i))
                if key in done:
                    continue
                x, y = data.probe_subset(n, index=i)
                start = time.perf_counter()
                op = HessianOperator(model, nn.CrossEntropyLoss(), (x.to(device), y.to(device)),
                                     chunk_size=args.chunk_size, method=args.method)
                with warnings.catch_warnings(), exact_float32():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    res = spectrum(op, args.k, max_iters=150, tol=args.tol, certify_iters=0,
                                   trace_samples=args.trace_samples, slq_vectors=0, seed=i)
                row = {"model": name, **ident(name, n, i), "lambda_max": res.top[0], "trace": res.trace, "trace_se": res.trace_stderr,
                       "products": op.n_matvecs, "seconds": time.perf_counter() - start,
                       "method": op.method, "chunk_size": args.chunk_size, "where": where,
                       "torch": torch.__version__}
                print(f"# {name} n={n} subset {i}: lambda_max {row['lambda_max']:.2f}, trace "
                      f"{row['trace']:.0f} ± {row['trace_se']:.0f}, {row['products']} products, "
                      f"{row['seconds']:.0f} s ({row['method']})", flush=True)
                done[key] = row
                if args.out is not None:
                    _append(args.out, row)
    print("| model | n | lambda_max (per subset) | mean ± s.e. | trace ± s.e. (mean of subsets) | "
          "products | seconds |")
    print("|---|---|---|---|---|---|---|")
    for name in models:
        for n in args.ns:
            got = [done[k] for i in range(args.subsets) if (k := _key(ident(name, n, i))) in done]
            if got:
                print(_table_row(name, n, got))


def _table_row(name: str, n: int, rows: list[dict]) -> str:
    """One table line: lambda_max per subset, their mean ± s.e., the trace's, products, seconds."""
    t = torch.tensor([r["lambda_max"] for r in rows], dtype=torch.float64)
    tr = torch.tensor([r["trace"] for r in rows], dtype=torch.float64)
    lam_se = float(t.std() / math.sqrt(len(rows))) if len(rows) > 1 else math.nan
    # with one subset the only spread known is the deflated estimate's own standard error
    tr_se = float(tr.std() / math.sqrt(len(rows))) if len(rows) > 1 else rows[0]["trace_se"]
    return (f"| {name} | {n} | {', '.join(f'{v:.1f}' for v in t.tolist())} | {float(t.mean()):.1f} ± "
            f"{lam_se:.1f} | {float(tr.mean()):.0f} ± {tr_se:.0f} | {sum(r['products'] for r in rows)} | "
            f"{sum(r['seconds'] for r in rows):.0f} |")


if __name__ == "__main__":
    main()
