"""Fastfood vs dense (and sparse) random projections at the small_cnn's size, D = 183,242.

For each ``d`` in 1,000 / 3,000 / 10,000 and each kind, a fresh subprocess builds the projection
and times forward + backward of ``P z`` (``(P(z) @ g).backward()`` for a fixed random ``g``), so
that each case's peak memory is its own. Memory is reported two ways:

* ``held``: bytes of the tensors the projection keeps (``Projection.nbytes``);
* ``peak RSS``: growth of the process's maximum resident set (``resource.getrusage``
  ``ru_maxrss``) from just before the projection is built to after the timed products, which
  includes temporaries of construction and of autograd.

The dense projection is materialised only under ``--max-dense-mib`` (default 4096 MiB here;
the library's default bound is 256 MiB, under which dense refuses all three sizes). At
d = 10,000 dense needs 7.3 GB and so raises the library's ValueError, which is reported.

Run: ``python benchmarks/subspace.py [--threads 1] [--d 1000 3000 10000]``.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time

D_SMALL_CNN = 183_242


def _measure(kind: str, D: int, d: int, max_dense_mib: int, threads: int) -> dict:
    """One case, in this process: build, then time forward + backward of ``P z``."""
    import resource

    import torch

    from losslands.subspace import make_projection

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)
    z = torch.randn(d, generator=gen).requires_grad_()
    g = torch.randn(D, generator=gen)
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    try:
        P = make_projection(kind, D, d, seed=0, max_dense_bytes=max_dense_mib * 2**20)
    except ValueError as err:
        return {"kind": kind, "d": d, "error": str(err)}
    build = time.perf_counter() - start

    def product() -> None:
        z.grad = None
        (P(z) @ g).backward()

    product()  # warm-up
    times = []
    while len(times) < 3 or (sum(times) < 1.0 and len(times) < 50):
        start = time.perf_counter()
        product()
        times.append(time.perf_counter() - start)
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times.sort()
    return {
        "kind": kind,
        "d": d,
        "build_s": build,
        "step_s": times[len(times) // 2],
        "reps": len(times),
        "held_mib": P.nbytes / 2**20,
        "peak_rss_mib": (rss1 - rss0) / 1024,  # ru_maxrss is in KiB on Linux
    }


def _run_case(kind: str, d: int, args: argparse.Namespace) -> dict:
    cmd = [
        sys.executable,
        __file__,
        "--case",
        kind,
        str(d),
        "--threads",
        str(args.threads),
        "--max-dense-mib",
        str(args.max_dense_mib),
        "--D",
        str(args.D),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def _fmt(row: dict | None, key: str, spec: str) -> str:
    if row is None or "error" in row:
        return "-"
    return format(row[key], spec)


def main(argv: list[str] | None = None) -> None:
    """Print a table of time and memory per case and fastfood/dense ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--D", type=int, default=D_SMALL_CNN)
    parser.add_argument("--d", type=int, nargs="+", default=[1_000, 3_000, 10_000])
    parser.add_argument("--kinds", nargs="+", default=["dense", "fastfood", "sparse"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-dense-mib", type=int, default=4096)
    parser.add_argument("--case", nargs=2, metavar=("KIND", "d"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.case:
        kind, d = args.case
        print(json.dumps(_measure(kind, args.D, int(d), args.max_dense_mib, args.threads)))
        return

    print(
        f"D = {args.D:,}, float32, CPU, torch threads = {args.threads}, "
        f"dense bound = {args.max_dense_mib} MiB; one subprocess per case"
    )
    print(
        f"{'kind':>9} {'d':>7} {'build s':>8} {'fwd+bwd ms':>11} {'held MiB':>9} "
        f"{'peak RSS MiB':>13}"
    )
    rows = {}
    for d in args.d:
        for kind in args.kinds:
            row = rows[kind, d] = _run_case(kind, d, args)
            if "error" in row:
                print(f"{kind:>9} {d:>7}  raised ValueError: {row['error']}")
                continue
            print(
                f"{kind:>9} {d:>7} {row['build_s']:>8.2f} {1e3 * row['step_s']:>11.2f} "
                f"{row['held_mib']:>9.2f} {row['peak_rss_mib']:>13.1f}"
            )

    print("\nratios fastfood / dense (time per fwd+bwd, held bytes, peak RSS growth):")
    for d in args.d:
        ff, dense = rows.get(("fastfood", d)), rows.get(("dense", d))
        if not ff or not dense or "error" in ff or "error" in dense:
            print(f"  d = {d:>6}: dense not materialised, no ratio")
            continue
        print(
            f"  d = {d:>6}: time {ff['step_s'] / dense['step_s']:.3f}, "
            f"held {ff['held_mib'] / dense['held_mib']:.5f}, "
            f"peak RSS {ff['peak_rss_mib'] / max(dense['peak_rss_mib'], 1e-9):.4f}"
        )


if __name__ == "__main__":
    main()
