"""Benchmark data-parallel curvature products (:mod:`losslands.curvature.distributed`).

Side by side on this machine, the same model (``SmallCNN``, seed 0) and the same random
CIFAR-shaped samples:

- **CPU**: one process with ``P`` threads against ``P`` processes with one thread each (gloo),
  each process holding ``1/P`` of the samples: wall time per Hessian-vector product and per
  probe (:func:`~losslands.curvature.spectrum.spectrum`: certified extremes, trace, density),
  printed as ratios (> 1: the processes are faster). Both sides use the same cores; what differs
  is intra-op threading against data parallelism plus one all-reduce per product.
- **GPU**: one GPU against ``N`` GPUs (NCCL, one process per GPU) at ``--gpu-samples`` (50,000)
  samples: wall time per product and the speed-up, against the target ``>= 0.8 N``. With one GPU,
  the product's time plain and through the data-parallel wrapper on one rank (its overhead).

Timings are medians over ``--repeats`` after one warm-up product (which builds the graph the
later products reuse); a distributed timing is the slowest rank's. On a CPU shared with other
jobs, the one process's threads contend with them (see ``tests/conftest.py``), which favours the
single-threaded processes: compare on an idle machine.

Run: ``python benchmarks/distributed.py [--samples 512] [--processes 2] [--gpu-samples 50000]``.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import Tensor, nn

from losslands.curvature import HessianOperator
from losslands.curvature.distributed import AllReduced, Shard
from losslands.curvature.spectrum import spectrum
from losslands.models.small_cnn import SmallCNN
from losslands.probes.runner import exact_float32


def _data(n: int) -> tuple[Tensor, Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.randn(n, 3, 32, 32, generator=g), torch.randint(0, 10, (n,), generator=g)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return SmallCNN().eval()


def _operator(args: argparse.Namespace, n: int, device: torch.device, shard: Shard | None):
    x, y = _data(n)
    if shard is not None:
        x, y = shard.split(x, y)
    model = _model().to(device)
    op = HessianOperator(model, nn.CrossEntropyLoss(), (x.to(device), y.to(device)),
                         chunk_size=args.chunk_size)
    return op if shard is None else AllReduced(op, len(x) / n, shard, check_inputs=False)


def _sync(device: torch.device, shard: Shard | None) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    if shard is not None:
        dist.barrier(group=shard.group)


def _measure(args: argparse.Namespace, n: int, device: torch.device, shard: Shard | None,
             probe: bool) -> dict[str, float]:
    """Median seconds per product (and one probe's seconds) on this process."""
    with exact_float32():
        return _measure_exact(args, n, device, shard, probe)


def _measure_exact(args: argparse.Namespace, n: int, device: torch.device, shard: Shard | None,
                   probe: bool) -> dict[str, float]:
    op = _operator(args, n, device, shard)
    v = torch.randn(op.dim, generator=torch.Generator().manual_seed(1)).to(device)
    op.matvec(v)  # warm-up: builds the graph that later products reuse
    times = []
    for _ in range(args.repeats):
        _sync(device, shard)
        start = time.perf_counter()
        op.matvec(v)
        _sync(device, shard)
        times.append(time.perf_counter() - start)
    out = {"product": statistics.median(times)}
    if probe:
        _sync(device, shard)
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # unconverged at toy sizes: timed anyway
            res = spectrum(op, args.k, max_iters=args.max_iters, tol=1e-4,
                           certify_iters=args.certify_iters, trace_samples=args.trace_samples,
                           slq_vectors=1, slq_iters=args.certify_iters, seed=0)
        _sync(device, shard)
        out["probe"] = time.perf_counter() - start
        out["probe_products"] = float(sum(res.matvecs.values()))
        out["lambda_max"] = res.top[0]
    return out


def _worker(rank: int, world: int, port: int, backend: str, args: argparse.Namespace,
            n: int, probe: bool, out: str) -> None:
    if backend == "gloo":
        torch.set_num_threads(1)  # P processes x 1 thread against 1 process x P threads
    device = torch.device("cuda", rank) if backend == "nccl" else torch.device("cpu")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group(backend, rank=rank, world_size=world)
    try:
        result = _measure(args, n, device, Shard.current(), probe)
        slowest = {}
        for key, value in result.items():  # the slowest rank's time is the job's time
            t = torch.tensor([value], dtype=torch.float64, device=device)
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
            slowest[key] = float(t)
        if rank == 0:
            torch.save(slowest, out)
    finally:
        dist.destroy_process_group()


def _distributed(args: argparse.Namespace, world: int, backend: str, n: int, probe: bool):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory() as tmp:
        out = str(Path(tmp) / "result.pt")
        mp.spawn(_worker, args=(world, port, backend, args, n, probe, out), nprocs=world, join=True)
        return torch.load(out)


def bench_cpu(args: argparse.Namespace) -> None:
    p = args.processes
    print(f"\n## CPU: 1 process x {p} threads vs {p} processes x 1 thread "
          f"({args.samples} samples, SmallCNN)")
    torch.set_num_threads(p)
    one = _measure(args, args.samples, torch.device("cpu"), None, probe=True)
    many = _distributed(args, p, "gloo", args.samples, probe=True)
    print(f"{'':24s} {'1 x ' + str(p) + ' threads':>18s} {str(p) + ' x 1 thread':>16s} {'ratio':>8s}")
    for key, label in (("product", "seconds per product"), ("probe", "seconds per probe")):
        print(f"{label:24s} {one[key]:18.4f} {many[key]:16.4f} {one[key] / many[key]:7.2f}x")
    print(f"{'products per probe':24s} {one['probe_products']:18.0f} {many['probe_products']:16.0f}")
    print(f"{'lambda_max':24s} {one['lambda_max']:18.6g} {many['lambda_max']:16.6g}")


def bench_gpu(args: argparse.Namespace) -> None:
    n_gpu = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_gpu == 0:
        print("\n## GPU: skipped (no CUDA device)")
        return
    n = args.gpu_samples
    one = _measure(args, n, torch.device("cuda", 0), None, probe=False)
    if n_gpu == 1:
        # One GPU cannot show a speed-up; what it can show is the product's cost at this size
        # and what the data-parallel wrapper (one NCCL all-reduce per product) adds to it.
        wrapped = _distributed(args, 1, "nccl", n, probe=False)
        print(f"\n## GPU: one {torch.cuda.get_device_name(0)}, {n} samples, SmallCNN")
        print(f"seconds per product: plain {one['product']:.4f}, through the data-parallel "
              f"wrapper (1 rank, NCCL) {wrapped['product']:.4f} ({wrapped['product'] / one['product']:.2f}x); "
              f"the 1-vs-N speed-up needs N >= 2 GPUs")
        return
    print(f"\n## GPU: 1 vs {n_gpu} GPUs, {n} samples, SmallCNN (target speed-up >= {0.8 * n_gpu:.1f}x)")
    many = _distributed(args, n_gpu, "nccl", n, probe=False)
    speedup = one["product"] / many["product"]
    verdict = "met" if speedup >= 0.8 * n_gpu else "NOT met"
    print(f"seconds per product: 1 GPU {one['product']:.4f}, {n_gpu} GPUs {many['product']:.4f}; "
          f"speed-up {speedup:.2f}x (target {verdict})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--processes", type=int, default=2, help="CPU processes (= threads of the one)")
    parser.add_argument("--gpu-samples", type=int, default=50_000)
    parser.add_argument("--chunk-size", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--max-iters", type=int, default=40)
    parser.add_argument("--certify-iters", type=int, default=10)
    parser.add_argument("--trace-samples", type=int, default=4)
    parser.add_argument("--skip-gpu", action="store_true")
    parser.add_argument("--skip-cpu", action="store_true")
    args = parser.parse_args()
    print("# Data-parallel curvature products (losslands.curvature.distributed)")
    if not args.skip_cpu:
        bench_cpu(args)
    if not args.skip_gpu:
        bench_gpu(args)


if __name__ == "__main__":
    main()
