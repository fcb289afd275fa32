"""``probe=lanczos``: extreme Hessian eigenvalues, trace and spectral density on probe subsets.

On disjoint probe subsets of ``probe.n_samples`` unaugmented training images (model in eval
mode), :func:`losslands.curvature.spectrum.spectrum` spends every Hessian-vector product on all
outputs at once:

- the ``k`` largest and ``k`` smallest eigenvalues by Lanczos with full reorthogonalisation,
  stopped on eigenvalue error bounds (``probe.stop: eigenvalue``, residual²/gap where the gap is
  resolved) or residuals; trained classifiers show about one outlier per class above a bulk near
  zero (Sagun et al. 2017; Papyan 2019, 2020), hence ``k = 10``;
- certification of both ends by a deflated restart; only certified values enter the means
  across subsets (``lambda_max_n``, ``lambda_min_n`` count them);
- the deflated trace (Hutch++ family, Meyer et al. 2021) ± its standard error;
- the density by SLQ on the deflated operator plus point masses at the outliers (Ghorbani,
  Krishnan & Xiao 2019), with ``negative_mass`` counting only nodes below
  ``-zero_tol * max|node|`` and ``near_zero_mass`` the weight within ``+-zero_tol * max|node|``
  (the logit-shift null space of every softmax classifier sits there with random signs).

Precision instead of size: with ``probe.target_rel_se``, subsets are added (from ``repeats`` up
to ``max_repeats``) until the standard errors of ``lambda_max`` and of the trace across subsets
are below ``target_rel_se`` times their values. ``probe.half_check`` adds ``lambda_max`` on the
first half of subset 0, so a reader sees whether the estimate still moves with ``n``.
``n_samples: null`` sizes the subsets by device (``n_samples_cpu`` / ``n_samples_gpu``); the
result records the size used.

``lambda_max_over_min`` is reported only when the spectrum is positive definite to within the
tolerance (``lambda_min > tol * lambda_max``); a trained network's Hessian is indefinite and a
softmax classifier's has a null space, which make the ratio rounding noise.

Weight decay: by default the Hessian is that of the data loss. With
``probe.include_weight_decay`` it is that of ``L + wd/2 |theta|^2`` for coupled L2 (SGD, Adam),
which adds ``wd`` to every eigenvalue; AdamW's decoupled decay (Loshchilov & Hutter 2019) is not
the gradient of any loss and is never added.

``probe.backend: pyhessian`` also runs PyHessian's power iteration (Yao et al. 2020) on the same
samples for a side-by-side check of the top eigenvalues.

Over ~300 lines: one probe's config, aggregation over subsets, per-block spectra, the PyHessian
side-by-side and its figures and tables.
"""

from __future__ import annotations

import copy
import logging
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.figure import Figure
from torch import Tensor

from losslands.curvature import lanczos
from losslands.curvature.operators import CURVATURES, Restricted
from losslands.curvature.spectrum import spectrum
from losslands.flat import block_indices, num_params
from losslands.probes.base import ProbeConfig, ProbeContext, ProbeInfo, Scalar
from losslands.stats import mean_std

log = logging.getLogger(__name__)

BACKENDS = ("losslands", "pyhessian")
STOPS = ("eigenvalue", "residual")
OPERATORS = ("hessian", *CURVATURES)


@dataclass
class Config(ProbeConfig):
    """Options of ``probe=lanczos`` (``conf/probe/lanczos.yaml`` documents each)."""

    name: str = "lanczos"
    operator: str = "hessian"
    blocks: Any = None
    block_k: int = 2
    n_samples: int | None = None
    n_samples_cpu: int = 256
    n_samples_gpu: int = 5000
    repeats: int = 3
    max_repeats: int = 3
    target_rel_se: float | None = None
    half_check: bool = True
    k: int = 10
    max_iters: int = 200
    tol: float = 1.0e-4
    stop: str = "eigenvalue"
    certify_iters: int = 20
    hutchinson_samples: int = 10
    slq_vectors: int = 1
    slq_iters: int = 30
    grid_size: int = 500
    zero_tol: float = 1.0e-4
    batch_products: int = 1
    include_weight_decay: bool = False
    chunk_size: int | None = 1000
    seed: int = 0
    backend: str = "losslands"
    pyhessian_top_n: int = 3
    pyhessian_max_iters: int = 100
    pyhessian_tol: float = 1.0e-3

    def check(self) -> None:
        for key, low in (("n_samples_cpu", 2), ("n_samples_gpu", 2), ("repeats", 1), ("k", 1),
                         ("certify_iters", 0), ("hutchinson_samples", 0), ("slq_vectors", 0),
                         ("slq_iters", 1), ("grid_size", 2), ("pyhessian_top_n", 1),
                         ("pyhessian_max_iters", 1)):
            self.at_least(key, low)
        if self.n_samples is not None:
            self.at_least("n_samples", 2)
        self.at_least("max_repeats", self.repeats)
        self.at_least("max_iters", 2 * self.k)
        self.positive("tol")
        self.positive("pyhessian_tol")
        if self.target_rel_se is not None:
            self.positive("target_rel_se")
        if not 0 < self.zero_tol < 1:
            raise ValueError(f"probe.zero_tol={self.zero_tol!r} must lie in (0, 1)")
        if self.chunk_size is not None:
            self.at_least("chunk_size", 1)
        self.one_of("stop", STOPS)
        self.one_of("backend", BACKENDS)
        self.one_of("operator", OPERATORS)
        self.at_least("block_k", 1)
        self.at_least("batch_products", 1)
        if self.include_weight_decay and self.operator != "hessian":
            raise ValueError("probe.include_weight_decay applies to probe.operator=hessian only")
        if self.backend == "pyhessian" and self.operator != "hessian":
            raise ValueError("probe.backend=pyhessian compares Hessians: keep probe.operator=hessian")
        if not (self.blocks is None or self.blocks == "layer"
                or (isinstance(self.blocks, list | tuple) and self.blocks
                    and all(isinstance(b, str) for b in self.blocks))):
            raise ValueError(
                f"probe.blocks={self.blocks!r} must be null, 'layer' or a list of parameter-name "
                "patterns (fnmatch, e.g. ['conv1.*', 'fc*'])"
            )

    def samples_for(self, device: torch.device) -> int:
        """The subset size: ``n_samples``, or the device's default when it is null."""
        if self.n_samples is not None:
            return self.n_samples
        return self.n_samples_gpu if device.type == "cuda" else self.n_samples_cpu


INFO = ProbeInfo(
    title="Hessian spectrum",
    order=10,
    scalars={
        "lambda_max": Scalar("largest Hessian eigenvalue, mean over the subsets where it was certified", "loss", null="not certified"),
        "lambda_max_se": Scalar("standard error of lambda_max across subsets (std / sqrt(n))", "loss"),
        "lambda_max_std": Scalar("std of lambda_max over the subsets", "loss"),
        "lambda_max_n": Scalar("subsets whose lambda_max was certified"),
        "lambda_max_half": Scalar("lambda_max on the first half of subset 0 (n/2 images)", "loss"),
        "lambda_min": Scalar("smallest Hessian eigenvalue, mean over the subsets where it was certified", "loss", null="not certified"),
        "lambda_min_se": Scalar("standard error of lambda_min across subsets", "loss"),
        "lambda_min_n": Scalar("subsets whose lambda_min was certified"),
        "abs_min_over_max": Scalar("|lambda_min| / lambda_max: how indefinite the Hessian is"),
        "lambda_max_over_min": Scalar("lambda_max / lambda_min, only when lambda_min > tol * lambda_max (positive definite)",
                                      null="indefinite or uncertified"),
        "trace": Scalar("deflated Hutchinson estimate of tr(H), mean over the subsets", "loss"),
        "trace_se": Scalar("standard error of the trace: subset-to-subset and probe noise", "loss"),
        "trace_stderr": Scalar("probe noise of the mean trace alone (standard error)", "loss"),
        "negative_mass": Scalar("density weight below -zero_tol * max|node| (fraction of eigenvalues)"),
        "near_zero_mass": Scalar("density weight within +-zero_tol * max|node| (null space and rounding)"),
        "negative_mass_smoothed": Scalar("mass of the smoothed density below -zero_tol * max|node|"),
        "n_samples": Scalar("images per subset", "images"),
        "subsets": Scalar("disjoint subsets used"),
        "matvecs": Scalar("Hessian-vector products spent, all subsets", "products"),
        "pyhessian_lambda_max": Scalar("PyHessian's top eigenvalue (backend=pyhessian)", "loss"),
    },
    table=["lambda_max", "lambda_min", "abs_min_over_max", "lambda_max_over_min", "trace",
           "negative_mass", "near_zero_mass"],
    definition=(
        "**Spectrum** (`probe=lanczos`): Hessian of the mean cross-entropy over disjoint probe "
        "subsets (no weight decay term unless `probe.include_weight_decay`). Extreme eigenvalues "
        "by Lanczos with full reorthogonalisation (Lanczos 1950; Paige 1972), stopped when the "
        "eigenvalue error bounds (residual²/gap, or the residual where the gap is unresolved) "
        "meet tol·max|θ|, and certified by a Lanczos restart on the operator deflated by the "
        "values found: only certified values are averaged (λmax ± standard error over subsets). "
        "|λmin|/λmax measures how indefinite the Hessian is; it is not a condition number. Trace: "
        "the exact sum of the deflated Ritz values plus a Hutchinson estimate on the deflated "
        "operator (Hutchinson 1989; Meyer et al. 2021), ± standard error. Density: stochastic "
        "Lanczos quadrature on the deflated operator plus point masses at the outliers (Ghorbani "
        "et al. 2019); negative mass counts only nodes below −τ·max|node| (τ = probe.zero_tol), "
        "the weight within ±τ·max|node| is the near-zero mass (the logit-shift null space)."
    ),
)


def _one_repeat(ctx: ProbeContext, cfg: Config, n: int, index: int) -> dict[str, Any]:
    start = time.perf_counter()
    x, y = ctx.probe_data(n, index=index)
    seed = cfg.seed + index
    op = ctx.hessian(x, y, include_weight_decay=cfg.include_weight_decay, chunk_size=cfg.chunk_size,
                     operator=cfg.operator, seed=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        res = spectrum(op, cfg.k, max_iters=cfg.max_iters, tol=cfg.tol, stop=cfg.stop,
                       certify_iters=cfg.certify_iters, trace_samples=cfg.hutchinson_samples,
                       slq_vectors=cfg.slq_vectors, slq_iters=cfg.slq_iters,
                       zero_tol=cfg.zero_tol, seed=seed, batch=cfg.batch_products)
    for w in caught:
        log.warning("lanczos subset %d: %s", index, w.message)
    grid, density, sigma = res.density(cfg.grid_size)
    cut = cfg.zero_tol * max(abs(v) for v in res.nodes)
    nodes, weights = torch.tensor(res.nodes), torch.tensor(res.weights)
    smoothed = float(weights @ torch.special.ndtr((-cut - nodes) / sigma)) / float(weights.sum())
    out = {
        "index": index,
        "n": n,
        "top": res.top, "bottom": res.bottom,
        "top_bounds": res.top_bounds, "bottom_bounds": res.bottom_bounds,
        "top_residuals": res.top_residuals, "bottom_residuals": res.bottom_residuals,
        "top_certified": res.top_certified, "bottom_certified": res.bottom_certified,
        "certified_by": res.certified_by,
        "iterations": res.iterations,
        "converged": res.converged,
        "warnings": [str(w.message) for w in caught],
        "trace": res.trace,
        "trace_stderr": res.trace_stderr,
        "trace_exact_part": res.trace_exact_part,
        "trace_samples": len(res.trace_samples),
        "negative_mass": res.negative_mass,
        "near_zero_mass": res.near_zero_mass,
        "negative_mass_smoothed": smoothed,
        "sigma": sigma,
        "density_grid": grid.tolist(),
        "density": density.tolist(),
        "matvecs": op.n_matvecs,
        "matvecs_by_output": res.matvecs,
        "seconds_by_output": res.seconds,
    }
    if cfg.backend == "pyhessian":
        out["pyhessian_top"] = [v + op.weight_decay for v in pyhessian_top(ctx, x, y, cfg, seed)]
    if cfg.blocks is not None and index == 0:
        out["blocks"] = _blocks(ctx, cfg, op, seed)
        out["matvecs_by_output"] = {**out["matvecs_by_output"],
                                    "blocks": sum(b["matvecs"] for b in out["blocks"])}
        out["matvecs"] = op.n_matvecs
    out["seconds"] = time.perf_counter() - start
    return out


def _blocks(ctx: ProbeContext, cfg: Config, op: Any, seed: int) -> list[dict[str, Any]]:
    """The spectrum of each diagonal block of the operator (subset 0 only: each block costs
    about as many products as the whole)."""
    out = []
    for name, idx in block_indices(ctx.model, cfg.blocks).items():
        k = min(cfg.block_k, max(1, idx.numel() // 2))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            res = spectrum(Restricted(op, idx), k, max_iters=max(cfg.max_iters, 2 * k), tol=cfg.tol,
                           stop=cfg.stop, certify_iters=cfg.certify_iters,
                           trace_samples=max(cfg.hutchinson_samples, 2), slq_vectors=0,
                           zero_tol=cfg.zero_tol, seed=seed)
        out.append({
            "block": name, "dim": int(idx.numel()),
            "top": res.top, "bottom": res.bottom,
            "top_certified": res.top_certified, "bottom_certified": res.bottom_certified,
            "trace": res.trace, "trace_stderr": res.trace_stderr,
            "matvecs": sum(res.matvecs.values()), "warnings": [str(w.message) for w in caught],
        })
    return out


def _half(ctx: ProbeContext, cfg: Config, n: int) -> dict[str, Any]:
    """``lambda_max`` on the first ``n // 2`` images of subset 0 (top end only)."""
    x, y = ctx.probe_data(n, index=0)
    h = n // 2
    op = ctx.hessian(x[:h], y[:h], include_weight_decay=cfg.include_weight_decay,
                     chunk_size=cfg.chunk_size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        eig = lanczos(op, 1, max_iters=cfg.max_iters, tol=cfg.tol, seed=cfg.seed, which="top",
                      stop=cfg.stop)
    return {"n": h, "lambda_max": float(eig.top[0]), "bound": float(eig.top_bounds[0]),
            "converged": eig.converged, "matvecs": op.n_matvecs}


def pyhessian_top(
    ctx: ProbeContext, x: Tensor, y: Tensor, cfg: Config, seed: int
) -> list[float]:
    """PyHessian's top eigenvalues on ``(x, y)`` (data loss only).

    Its quirks are contained here: it calls ``backward(create_graph=True)`` on the model (so
    it runs on a copy whose ``.grad`` is dropped afterwards), draws its start vectors from the
    global RNG (forked and seeded here), keeps the whole batch's graph in memory, and its power
    iteration stops when successive Rayleigh quotients differ by less than
    ``probe.pyhessian_tol`` (relative), so agreement to about that tolerance is expected.
    Power iteration finds the largest ``|lambda|``, which is the top eigenvalue only while no
    negative eigenvalue is larger in magnitude.
    """
    from pyhessian import hessian as PyHessian

    model = copy.deepcopy(ctx.model).eval()
    for p in model.parameters():
        p.grad = None
    cuda = ctx.device.type == "cuda"
    try:
        with (
            torch.random.fork_rng(devices=[ctx.device.index or 0] if cuda else []),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore", UserWarning)  # create_graph reference-cycle notice
            torch.manual_seed(seed)
            comp = PyHessian(model, ctx.loss_fn, data=(x, y), cuda=cuda)
            values, _ = comp.eigenvalues(
                maxIter=cfg.pyhessian_max_iters,
                tol=cfg.pyhessian_tol,
                top_n=cfg.pyhessian_top_n,
            )
    finally:
        for p in model.parameters():
            p.grad = None  # break the create_graph cycle so the copy is freed
    return [float(v) for v in values]


def _mean_std(values: list[float]) -> tuple[float, float]:
    m, sd, _ = mean_std(values, drop_missing=False)
    return m, sd


def _certified_stats(repeats: list[dict[str, Any]], end: str, j: int) -> tuple[float, float, float, int]:
    """Mean, std, standard error and count of the ``j``-th value of ``end`` over the subsets
    where it was certified."""
    values = [r[end][j] for r in repeats if r[f"{end}_certified"][j]]
    m, sd, n = mean_std(values)
    return m, sd, sd / math.sqrt(n) if n > 1 else math.nan, n


def _enough(repeats: list[dict[str, Any]], cfg: Config) -> bool:
    if len(repeats) < cfg.repeats:
        return False
    if cfg.target_rel_se is None or len(repeats) >= cfg.max_repeats:
        return True
    lam, _, lam_se, _ = _certified_stats(repeats, "top", 0)
    trace, trace_sd, _ = mean_std([r["trace"] for r in repeats])
    trace_se = math.sqrt(trace_sd**2 / len(repeats)) if len(repeats) > 1 else math.nan
    return (lam_se <= cfg.target_rel_se * abs(lam)) and (trace_se <= cfg.target_rel_se * abs(trace))


def run(ctx: ProbeContext, cfg: Config) -> dict[str, Any]:
    dim = num_params(ctx.model)
    n = cfg.samples_for(ctx.device)
    if 2 * cfg.k > dim:
        raise ValueError(
            f"probe.k={cfg.k} asks for {2 * cfg.k} extreme eigenvalues but the model has "
            f"{dim} parameters: set probe.k <= {dim // 2}"
        )
    if n * cfg.max_repeats > ctx.data.num_train:
        raise ValueError(
            f"probe.n_samples x probe.max_repeats = {n} x {cfg.max_repeats} disjoint images, but "
            f"the training split has {ctx.data.num_train}: lower one of them"
        )
    repeats: list[dict[str, Any]] = []
    bar = ctx.progress(range(cfg.max_repeats), desc="lanczos subsets")
    for i in bar:  # each finished subset is saved: a killed job resumes at the next one
        repeats.append(ctx.partial.cached(f"subset={i}", lambda i=i: _one_repeat(ctx, cfg, n, i)))
        if _enough(repeats, cfg):
            break
    half = (ctx.partial.cached("half", lambda: _half(ctx, cfg, n))
            if cfg.half_check and n >= 4 else None)
    lam_max, lam_max_std, lam_max_se, lam_max_n = _certified_stats(repeats, "top", 0)
    lam_min, lam_min_std, lam_min_se, lam_min_n = _certified_stats(repeats, "bottom", 0)
    trace, trace_std, _ = mean_std([r["trace"] for r in repeats], drop_missing=False)
    # probe noise of the mean of independent per-subset estimates
    probe_se = math.sqrt(sum(r["trace_stderr"] ** 2 for r in repeats)) / len(repeats)
    # subset-to-subset spread already contains the probe noise; with one subset only the latter
    trace_se = trace_std / math.sqrt(len(repeats)) if len(repeats) > 1 else probe_se
    top = [_certified_stats(repeats, "top", j) for j in range(cfg.k)]
    bottom = [_certified_stats(repeats, "bottom", j) for j in range(cfg.k)]
    definite = lam_min_n > 0 and lam_max_n > 0 and lam_min > cfg.tol * lam_max
    wd = ctx.coupled_weight_decay if cfg.include_weight_decay else 0.0
    by_output: dict[str, int] = {}
    for r in repeats:
        for key, value in r["matvecs_by_output"].items():
            by_output[key] = by_output.get(key, 0) + value
    return {
        "n_samples": n,
        "repeats": len(repeats),
        "subsets": len(repeats),
        "k": cfg.k,
        "dim": dim,
        "weight_decay": wd,
        "backend": cfg.backend,
        "lambda_max": lam_max,
        "lambda_max_std": lam_max_std,
        "lambda_max_se": lam_max_se,
        "lambda_max_n": lam_max_n,
        "lambda_min": lam_min,
        "lambda_min_std": lam_min_std,
        "lambda_min_se": lam_min_se,
        "lambda_min_n": lam_min_n,
        "top_mean": [m for m, *_ in top],
        "top_std": [sd for _, sd, *_ in top],
        "top_n": [c for *_, c in top],
        "bottom_mean": [m for m, *_ in bottom],
        "bottom_std": [sd for _, sd, *_ in bottom],
        "bottom_n": [c for *_, c in bottom],
        "abs_min_over_max": abs(lam_min) / lam_max if lam_max_n and lam_min_n and lam_max > 0 else None,
        "lambda_max_over_min": lam_max / lam_min if definite else None,
        "half": half,
        "lambda_max_half": half["lambda_max"] if half else None,
        "trace": trace,
        "trace_std": trace_std,
        "trace_se": trace_se,
        "trace_stderr": probe_se,
        "negative_mass": _mean_std([r["negative_mass"] for r in repeats])[0],
        "negative_mass_std": _mean_std([r["negative_mass"] for r in repeats])[1],
        "near_zero_mass": _mean_std([r["near_zero_mass"] for r in repeats])[0],
        "negative_mass_smoothed": _mean_std([r["negative_mass_smoothed"] for r in repeats])[0],
        "zero_tol": cfg.zero_tol,
        "matvecs": sum(r["matvecs"] for r in repeats) + (half["matvecs"] if half else 0),
        "matvecs_by_output": {**by_output, "half_check": half["matvecs"] if half else 0},
        "operator": cfg.operator,
        "blocks": repeats[0].get("blocks"),
        **_pyhessian_summary(repeats),
        "per_repeat": repeats,
    }


def _pyhessian_summary(repeats: list[dict[str, Any]]) -> dict[str, Any]:
    """PyHessian's top eigenvalues, mean and std over the subsets, next to ours (if it ran)."""
    if not all("pyhessian_top" in r for r in repeats):
        return {}
    n = min(len(r["pyhessian_top"]) for r in repeats)
    stats = [_mean_std([sorted(r["pyhessian_top"], reverse=True)[j] for r in repeats])
             for j in range(n)]
    return {
        "pyhessian_top_mean": [m for m, _ in stats],
        "pyhessian_top_std": [s for _, s in stats],
        "pyhessian_lambda_max": stats[0][0],
    }


def scalars(result: dict[str, Any]) -> dict[str, float | None]:
    names = (
        "lambda_max", "lambda_max_se", "lambda_max_std", "lambda_max_n", "lambda_max_half",
        "lambda_min", "lambda_min_se", "lambda_min_n", "abs_min_over_max", "lambda_max_over_min",
        "trace", "trace_se", "trace_stderr", "negative_mass", "near_zero_mass",
        "negative_mass_smoothed", "n_samples", "subsets", "matvecs",
    )
    out = {name: result[name] for name in names}
    if "pyhessian_lambda_max" in result:
        out["pyhessian_lambda_max"] = result["pyhessian_lambda_max"]
    return out


def plot(result: dict[str, Any]) -> Figure:
    blocks = result.get("blocks")
    fig = Figure(figsize=(16 if blocks else 11, 4.2), layout="constrained")
    axes = fig.subplots(1, 3 if blocks else 2)
    ax_eig, ax_den = axes[0], axes[1]
    if blocks:
        _plot_blocks(axes[2], blocks)
    for r in result["per_repeat"]:
        k = len(r["top"])
        (line,) = ax_eig.plot(range(1, k + 1), r["top"], "-", label=f"subset {r['index']}: top")
        ax_eig.plot(range(1, k + 1), r["bottom"], "--", color=line.get_color(),
                    label=f"subset {r['index']}: bottom")
        for end, marker in (("top", "o"), ("bottom", "s")):
            for j, (v, ok) in enumerate(zip(r[end], r[f"{end}_certified"], strict=True)):
                ax_eig.plot([j + 1], [v], marker, color=line.get_color(),
                            fillstyle="full" if ok else "none")
        if "pyhessian_top" in r:
            ax_eig.plot(
                range(1, len(r["pyhessian_top"]) + 1),
                r["pyhessian_top"],
                "x",
                color="k",
                label="PyHessian" if r["index"] == 0 else None,
            )
        ax_den.semilogy(
            r["density_grid"], [max(d, 1e-12) for d in r["density"]], label=f"subset {r['index']}"
        )
    ax_eig.axhline(0.0, color="grey", lw=0.5)
    # Linear within 0.1% of the largest magnitude, so both ends and the sign stay visible.
    largest = max(abs(v) for r in result["per_repeat"] for v in r["top"] + r["bottom"])
    ax_eig.set_yscale("symlog", linthresh=max(1e-3 * largest, 1e-12))
    ax_eig.set(
        xlabel="rank j (top: j-th largest, bottom: j-th smallest)",
        ylabel="eigenvalue",
        title=f"extreme Hessian eigenvalues (n={result['n_samples']}; hollow: not certified)",
    )
    ax_eig.legend(fontsize=7)
    ax_den.axvline(0.0, color="grey", lw=0.5)
    ax_den.set(
        xlabel="eigenvalue",
        ylabel="density",
        title=(f"SLQ density (deflated bulk + outliers), negative mass "
               f"{result['negative_mass']:.3g}, near zero {result['near_zero_mass']:.3g}"),
    )
    ax_den.legend(fontsize=7)
    return fig


def _plot_blocks(ax: Any, blocks: list[dict[str, Any]]) -> None:
    names = [b["block"] for b in blocks]
    pos = range(len(blocks))
    ax.bar([p - 0.2 for p in pos], [b["top"][0] for b in blocks], width=0.4, label="λmax of the block")
    ax.bar([p + 0.2 for p in pos], [b["trace"] for b in blocks], width=0.4,
           yerr=[b["trace_stderr"] for b in blocks], label="trace ± s.e.")
    ax.set_xticks(list(pos), names, rotation=45, ha="right", fontsize=7)
    ax.set(title="per-block (diagonal block) curvature, subset 0", ylabel="eigenvalue / trace")
    ax.legend(fontsize=7)


def lines(result: dict[str, Any]) -> dict[str, tuple[str, dict[str, tuple[list, list]]]]:
    density = {
        f"subset {r['index']}": (r["density_grid"], r["density"]) for r in result["per_repeat"]
    }
    return {"density": ("eigenvalue", density)}


def tables(result: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    density = [
        [r["index"], g, d]
        for r in result["per_repeat"]
        for g, d in zip(r["density_grid"], r["density"], strict=True)
    ]
    eigen = []
    for r in result["per_repeat"]:
        for end in ("top", "bottom"):
            rows = zip(r[end], r[f"{end}_residuals"], r[f"{end}_bounds"], r[f"{end}_certified"],
                       strict=True)
            for j, (value, res, bound, ok) in enumerate(rows):
                eigen.append([r["index"], end, j + 1, value, res, bound, ok])
        for j, value in enumerate(r.get("pyhessian_top", [])):
            eigen.append([r["index"], "pyhessian_top", j + 1, value, None, None, None])
    out = {}
    if result.get("blocks"):
        out["blocks"] = (["block", "dim", "lambda_max", "lambda_min", "trace", "trace_stderr"],
                         [[b["block"], b["dim"], b["top"][0], b["bottom"][0], b["trace"],
                           b["trace_stderr"]] for b in result["blocks"]])
    return {
        **out,
        "density": (["subset", "eigenvalue", "density"], density),
        "eigenvalues": (["subset", "end", "rank", "eigenvalue", "residual", "bound", "certified"],
                        eigen),
    }
