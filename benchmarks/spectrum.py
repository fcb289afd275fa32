"""Benchmark the spectrum probe's full output set against curvlinops and PyHessian, side by side.

Output set on one probe subset: top-k and bottom-k eigenvalues, trace ± standard error and the
spectral density. Compared, in one process on the same model and samples:

- **losslands**: :func:`losslands.curvature.spectrum.spectrum` (certified extremes, deflated
  trace, deflated SLQ density, every product shared) on :class:`HessianOperator`.
- **curvlinops** (Dangel et al., ``curvlinops-for-pytorch``): ``HessianLinearOperator`` with
  SciPy's ``eigsh`` for each end, ``hutchpp_trace`` and ``lanczos_approximate_spectrum``.
- the Gauss-Newton product: :class:`GGNOperator` against curvlinops' ``GGNLinearOperator``.
- **PyHessian** (Yao et al. 2020): ``eigenvalues`` (power iteration with deflation; top end
  only) and ``trace`` (Hutchinson); its ``density`` calls ``torch.eig``, removed from PyTorch:
  the script records whether it runs.

Reported: products, wall time, per-product time, errors against a tight reference (Lanczos to
``--ref-tol`` residuals; the trace from many deflated samples, ± its standard error), the trace
standard error at equal products against plain Hutchinson, and the throughput of batched
products (``HessianOperator.matmat``) against single ones.

Targets: per-product time <= curvlinops'; the whole output set in <= 0.5x curvlinops' wall time;
trace standard error at equal products >= 3x smaller than plain Hutchinson.

Run: ``python benchmarks/spectrum.py [--samples 512] [--weights <cache>/<hash>/model.pt]
[--backends losslands]`` (a subset of backends: their output sets only, no targets).
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import time
import warnings

import numpy as np
import torch
from torch import nn

from curvature import _counting_pyhessian, _data, _trained_model  # the sibling benchmark script
from losslands.curvature import HessianOperator, hutchinson_trace, lanczos
from losslands.curvature.spectrum import Deflated, spectrum
from losslands.curvature.trace import probe_vectors
from losslands.models.small_cnn import SmallCNN
from losslands.probes.runner import exact_float32, tf32


def _timed(fn):
    _sync()
    start = time.perf_counter()
    out = fn()
    _sync()
    return time.perf_counter() - start, out


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


BACKENDS = ("losslands", "curvlinops", "pyhessian")


def _rel_err(values, reference) -> float:
    v, r = np.asarray(values, dtype=float), np.asarray(reference, dtype=float)
    return float(np.max(np.abs(v - r) / np.abs(r).max()))


class _Counter:
    """Counts the columns a curvlinops operator multiplies."""

    def __init__(self, op) -> None:
        self.n = 0
        original = op._matmat

        def counted(x):
            self.n += x[0].shape[-1] if isinstance(x, list) else (x.shape[-1] if x.dim() > 1 else 1)
            return original(x)

        op._matmat = counted


def bench_products(model, loss_fn, x, y, repeats: int) -> dict[str, float]:
    from curvlinops import HessianLinearOperator

    print("\n## Per-product time (median of", repeats, "runs)")
    ours = HessianOperator(model, loss_fn, (x, y))
    params = [p for p in model.parameters() if p.requires_grad]
    theirs = HessianLinearOperator(model, loss_fn, params, [(x, y)], check_deterministic=False)
    v = torch.randn(ours.dim, generator=torch.Generator().manual_seed(1)).to(x.device)
    ours.matvec(v)  # build the graph once, as every later product reuses it
    t_ours = sorted(_timed(lambda: ours.matvec(v))[0] for _ in range(repeats))[repeats // 2]
    t_theirs = sorted(_timed(lambda: theirs @ v)[0] for _ in range(repeats))[repeats // 2]
    print(f"losslands HessianOperator ({ours.method}): {t_ours:.3f} s")
    print(f"curvlinops HessianLinearOperator:  {t_theirs:.3f} s  (losslands / curvlinops = "
          f"{t_ours / t_theirs:.2f}x)")
    out = {"ours": t_ours, "curvlinops": t_theirs}
    from curvlinops import GGNLinearOperator

    from losslands.curvature.operators import GGNOperator

    ggn = GGNOperator(model, loss_fn, (x, y))
    ggn_theirs = GGNLinearOperator(model, loss_fn, params, [(x, y)], check_deterministic=False)
    t_ggn = sorted(_timed(lambda: ggn.matvec(v))[0] for _ in range(repeats))[repeats // 2]
    t_ggn_theirs = sorted(_timed(lambda: ggn_theirs @ v)[0] for _ in range(repeats))[repeats // 2]
    print(f"losslands GGNOperator:             {t_ggn:.3f} s")
    print(f"curvlinops GGNLinearOperator:      {t_ggn_theirs:.3f} s  (losslands / curvlinops = "
          f"{t_ggn / t_ggn_theirs:.2f}x)")
    out["ggn"], out["ggn_curvlinops"] = t_ggn, t_ggn_theirs
    for b in (4, 8, 16):
        vs = torch.randn(b, ours.dim, generator=torch.Generator().manual_seed(2)).to(x.device)
        t_b = sorted(_timed(lambda vs=vs: ours.matmat(vs))[0] for _ in range(repeats))[repeats // 2]
        print(f"batched matmat, {b} vectors: {t_b / b:.3f} s per vector "
              f"({t_ours / (t_b / b):.2f}x the throughput of single products)")
        out[f"matmat{b}"] = t_b / b
    if x.device.type == "cuda":
        _tf32_effect(ours, v, repeats)
    return out


def _tf32_effect(op: HessianOperator, v: torch.Tensor, repeats: int) -> None:
    """What TF32 (cuDNN's default on a GPU) does to a Hessian-vector product: time and error."""
    exact = op.matvec(v)
    t_exact = sorted(_timed(lambda: op.matvec(v))[0] for _ in range(repeats))[repeats // 2]
    with tf32(True):
        fast = op.matvec(v)
        t_fast = sorted(_timed(lambda: op.matvec(v))[0] for _ in range(repeats))[repeats // 2]
    err = float((fast - exact).norm() / exact.norm())
    print(f"TF32 on: {t_fast:.4f} s per product ({t_exact / t_fast:.2f}x float32's speed), "
          f"relative error of the product {err:.1e} (the probes run with TF32 off)")


def reference(model, loss_fn, x, y, k: int, ref_tol: float, trace_samples: int) -> dict:
    op = HessianOperator(model, loss_fn, (x, y))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        eig = lanczos(op, k, max_iters=600, tol=ref_tol, seed=123, stop="residual")
    dop = Deflated(op, torch.cat([eig.top_vectors, eig.bottom_vectors]))
    samples = []
    for z in probe_vectors(op, trace_samples, seed=999):
        pz = dop.project(z)
        samples.append(float(pz.double() @ op.matvec(pz).double()))
    s = torch.tensor(samples, dtype=torch.float64)
    trace = float(eig.top.sum() + eig.bottom.sum()) + float(s.mean())
    se = float(s.std() / math.sqrt(len(samples)))
    print(f"\nreference: {eig.iterations} Lanczos steps (converged: {eig.converged}); top "
          f"{eig.top[:3].tolist()}, bottom {eig.bottom[:3].tolist()}; trace {trace:.4g} ± {se:.2g} "
          f"({trace_samples} deflated samples); {op.n_matvecs} products")
    return {"top": eig.top.tolist(), "bottom": eig.bottom.tolist(), "trace": trace, "trace_se": se,
            "vectors": torch.cat([eig.top_vectors, eig.bottom_vectors])}


def bench_ours(model, loss_fn, x, y, k, ref, args) -> dict:
    op = HessianOperator(model, loss_fn, (x, y))
    t, res = _timed(lambda: spectrum(op, k, max_iters=300, tol=args.tol, certify_iters=30,
                                     trace_samples=args.trace_samples, slq_vectors=2, slq_iters=30))
    # the probe reports only certified values (a prefix from each end): errors over those, and
    # over all k Ritz values for comparison with the baselines, which certify nothing
    nt, nb = sum(res.top_certified), sum(res.bottom_certified)
    print(f"\nlosslands bottom-{k} vs reference (certified *): " + ", ".join(
        f"{v:.4g}{'*' if c else ''} / {r:.4g}"
        for v, c, r in zip(res.bottom, res.bottom_certified, ref["bottom"], strict=True)))
    out = {"seconds": t, "products": op.n_matvecs,
           "top_err": _rel_err(res.top[:nt], ref["top"][:nt]) if nt else math.nan,
           "bottom_err": _rel_err(res.bottom[:nb], ref["bottom"][:nb]) if nb else math.nan,
           "all_err": (_rel_err(res.top, ref["top"]), _rel_err(res.bottom, ref["bottom"])),
           "trace": res.trace, "trace_se": res.trace_stderr, "density": "deflated SLQ + point masses",
           "certified": f"{nt}+{nb} of {2 * k}",
           "by_output": res.matvecs}
    return out


def bench_curvlinops(model, loss_fn, x, y, k, ref, args) -> dict:
    from curvlinops import HessianLinearOperator, hutchpp_trace, lanczos_approximate_spectrum
    from scipy.sparse.linalg import eigsh

    params = [p for p in model.parameters() if p.requires_grad]
    op = HessianLinearOperator(model, loss_fn, params, [(x, y)], check_deterministic=False)
    counter = _Counter(op)
    scipy_op = op.to_scipy()
    start = time.perf_counter()
    top = eigsh(scipy_op, k=k, which="LA", tol=args.tol, return_eigenvectors=False)
    bottom = eigsh(scipy_op, k=k, which="SA", tol=args.tol, return_eigenvectors=False)
    torch.manual_seed(0)
    # Hutch++ with the products our trace estimate spends beyond the extremes, 3 times for a spread
    budget = max(3, 3 * ((args.trace_samples + 2 * 30 + 2) // 3))
    traces = [float(hutchpp_trace(op, budget)) for _ in range(3)]
    grid, density = lanczos_approximate_spectrum(op, ncv=30, num_repeats=2)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "products": counter.n,
            "top_err": _rel_err(sorted(top, reverse=True), ref["top"]),
            "bottom_err": _rel_err(sorted(bottom), ref["bottom"]),
            "trace": float(np.mean(traces)), "trace_se": float(np.std(traces, ddof=1) / math.sqrt(3)),
            "density": f"{len(grid)} points (Papyan 2020, ncv 30 x 2)"}


def bench_pyhessian(model, loss_fn, x, y, ref, args) -> dict:
    from pyhessian import hessian

    torch.manual_seed(0)
    out: dict = {}
    with _counting_pyhessian() as calls, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        comp = hessian(model, loss_fn, data=(x, y), cuda=False)
        start = time.perf_counter()
        top, _ = comp.eigenvalues(top_n=args.pyhessian_top)
        trace_samples = comp.trace(maxIter=args.trace_samples + 2 * 30 + 2, tol=0.0)
        out["seconds"] = time.perf_counter() - start
        try:
            comp.density(iter=30, n_v=1)
            out["density"] = "ran"
        except Exception as e:  # noqa: BLE001 - the point is to record how it fails
            out["density"] = f"fails: {type(e).__name__}: {str(e).splitlines()[0][:80]}"
        out["products"] = calls[0]
    model.zero_grad(set_to_none=True)
    n = len(trace_samples)
    out.update(top_err=_rel_err(sorted(top, reverse=True), ref["top"][: len(top)]), bottom_err=None,
               trace=float(np.mean(trace_samples)),
               trace_se=float(np.std(trace_samples, ddof=1) / math.sqrt(n)))
    return out


def bench_trace_variance(model, loss_fn, x, y, ref, n: int) -> float:
    """Standard error of n plain Hutchinson samples over that of n deflated ones (same op)."""
    op = HessianOperator(model, loss_fn, (x, y))
    plain = hutchinson_trace(op, n_samples=n, seed=5)
    dop = Deflated(op, ref["vectors"])
    samples = torch.tensor([float(dop.project(z).double() @ op.matvec(dop.project(z)).double())
                            for z in probe_vectors(op, n, seed=6)], dtype=torch.float64)
    se = float(samples.std() / math.sqrt(n))
    ratio = plain.stderr / se
    print(f"\n## Trace standard error at {n} products: plain Hutchinson {plain.stderr:.3g}, deflated "
          f"by the top/bottom {ref['vectors'].shape[0] // 2} {se:.3g}: {ratio:.1f}x smaller "
          f"(variance {ratio ** 2:.0f}x)")
    return ratio


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--samples", type=int, default=512)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--tol", type=float, default=1e-4)
    parser.add_argument("--ref-tol", type=float, default=1e-6)
    parser.add_argument("--ref-trace-samples", type=int, default=60)
    parser.add_argument("--trace-samples", type=int, default=10)
    parser.add_argument("--pyhessian-top", type=int, default=3)
    parser.add_argument("--train-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--weights", default=None, help="a SmallCNN state dict (model.pt)")
    parser.add_argument("--products-only", action="store_true", help="only the per-product times")
    parser.add_argument("--device", default="cpu", help="cuda: per-product times on the GPU "
                        "(with --products-only)")
    parser.add_argument("--backends", default=",".join(BACKENDS),
                        help="comma-separated subset of the output-set comparison; a subset runs "
                        "only the reference and those (no per-product times, no targets)")
    parser.add_argument("--variance-only", action="store_true",
                        help="only the trace standard error, deflated vs plain Hutchinson")
    args = parser.parse_args(argv)
    if args.device != "cpu" and not (args.products_only or args.variance_only):
        parser.error("--device applies to --products-only and --variance-only (the full comparison "
                     "runs on the CPU)")
    if args.threads:
        torch.set_num_threads(args.threads)
    x, y = _data(args.samples)
    source = "CIFAR-10" if os.environ.get("LOSSLANDS_CIFAR10_ROOT") else "random"
    if args.weights:
        model = SmallCNN()
        model.load_state_dict(torch.load(args.weights, map_location="cpu", weights_only=True))
        model.eval()
        what = f"weights {args.weights}"
    else:
        model, what = _trained_model(x, y, args.train_steps), f"{args.train_steps} SGD steps"
    device = torch.device(args.device)
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    print(f"# spectrum benchmark: SmallCNN ({what}), {args.samples} {source} samples, k={args.k}, "
          f"tol={args.tol}, {where}, torch {torch.__version__}")
    loss_fn = nn.CrossEntropyLoss()
    if args.variance_only:
        with exact_float32():
            x, y = x.to(device), y.to(device)
            ref = reference(model.to(device), loss_fn, x, y, args.k, args.ref_tol, args.ref_trace_samples)
            ratio = bench_trace_variance(model, loss_fn, x, y, ref, args.trace_samples + 2 * 30 + 2)
        print(f"trace s.e. plain Hutchinson / deflated at equal products: {ratio:.2f}x (target >= 3x): "
              f"{'met' if ratio >= 3 else 'NOT met'}")
        return
    backends = [b for b in args.backends.split(",") if b]
    if not backends or set(backends) - set(BACKENDS):
        parser.error(f"--backends takes a comma-separated subset of {','.join(BACKENDS)}")
    partial = set(backends) != set(BACKENDS)  # then the output set only: no per-product times, no targets
    if not partial or args.products_only:
        with exact_float32():
            per_product = bench_products(model.to(device), loss_fn, x.to(device), y.to(device),
                                         args.repeats)
    if args.products_only:
        return
    ref = reference(model, loss_fn, x, y, args.k, args.ref_tol, args.ref_trace_samples)
    if partial:
        _output_set(model, loss_fn, x, y, ref, backends, args)
        return
    ours, curvlinops = _output_set(model, loss_fn, x, y, ref, backends, args)
    ratio = bench_trace_variance(model, loss_fn, x, y, ref, args.trace_samples + 2 * 30 + 2)
    print("\n## Targets")
    targets = [
        ("per-product time losslands / curvlinops", per_product["ours"] / per_product["curvlinops"], "<=", 1.0),
        ("output set wall time losslands / curvlinops", ours["seconds"] / curvlinops["seconds"], "<=", 0.5),
        ("trace s.e. plain Hutchinson / deflated at equal products", ratio, ">=", 3.0),
    ]
    for name, value, op, target in targets:
        met = value <= target if op == "<=" else value >= target
        print(f"{name}: {value:.2f}x (target {op} {target:g}x): {'met' if met else 'NOT met'}")


def _output_set(model, loss_fn, x, y, ref, backends, args):
    """Run and print the full output set of each backend; (losslands row, curvlinops row)."""
    benches = {"losslands": bench_ours, "curvlinops": bench_curvlinops,
               "pyhessian": lambda model, loss_fn, x, y, k, ref, args: bench_pyhessian(
                   model, loss_fn, x, y, ref, args)}
    rows = {name: benches[name](model, loss_fn, x, y, args.k, ref, args) for name in backends}
    print("\n## Full output set (top-k, bottom-k, trace ± s.e., density)")
    print(f"{'backend':<11} {'products':>8} {'seconds':>8} {'top err':>9} {'bottom err':>10} "
          f"{'trace':>10} {'± s.e.':>8} {'trace err/ref s.e.':>18}  density")
    for name, r in rows.items():
        bottom = "-" if r["bottom_err"] is None else f"{r['bottom_err']:.1e}"
        err = abs(r["trace"] - ref["trace"]) / math.hypot(ref["trace_se"], r["trace_se"])
        print(f"{name:<11} {r['products']:>8} {r['seconds']:>8.1f} {r['top_err']:>9.1e} {bottom:>10} "
              f"{r['trace']:>10.4g} {r['trace_se']:>8.2g} {err:>18.1f}  {r['density']}")
    if "losslands" in rows:
        ours = rows["losslands"]
        print(f"losslands products by output: {ours['by_output']}; certified {ours['certified']}; "
              f"errors above over the certified values only; over all {args.k} Ritz values at each "
              f"end: top {ours['all_err'][0]:.1e}, bottom {ours['all_err'][1]:.1e}")
    if "pyhessian" in rows:
        print(f"(PyHessian: top-{args.pyhessian_top} only; its power iteration has no bottom end)")
    return rows.get("losslands"), rows.get("curvlinops")


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
