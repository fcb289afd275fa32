"""``probe=lanczos``: extreme Hessian eigenvalues, trace and spectral density on the probe subset.

On each of ``probe.repeats`` disjoint probe subsets of ``probe.n_samples`` unaugmented training
images, with the model in eval mode:

- the ``k`` largest and ``k`` smallest eigenvalues of the Hessian of the mean loss, by Lanczos
  with full reorthogonalisation (:func:`losslands.curvature.lanczos`), with their residuals
  ``|H v - lambda v|``. Trained classifiers typically show about one outlier per class above
  a bulk near zero (Sagun et al. 2017, "Empirical Analysis of the Hessian of
  Over-Parametrized Neural Networks"; Papyan 2019, "Measurements of Three-Level Hierarchical
  Structure in the Outliers in the Spectrum of Deepnet Hessians"; Papyan 2020, "Traces of
  Class/Cross-Class Structure Pervade Deep Learning Spectra"), hence the default ``k = 10``;
- Hutchinson's trace estimate with its standard error (Hutchinson 1989);
- the eigenvalue density by stochastic Lanczos quadrature and its mass below zero (Ghorbani,
  Krishnan & Xiao 2019, "An Investigation into Neural Net Optimization via Hessian Eigenvalue
  Density"). The negative mass is the quadrature weight on nodes below zero: with few
  ``probe.slq_iters`` the bulk of near-zero eigenvalues sits on one or two nodes whose sign
  decides it (a smoke run with 10 steps gave 0.98, one with 20 steps 0.01, on similar
  models), so trust it only with enough steps (Ghorbani et al. use about 90).

The extremes and the trace are reported as mean and std over the repeats (data-subset
variability; ``trace_stderr`` is the Hutchinson probe noise of the mean). The Hessian of a
trained network is indefinite, so ``lambda_max / lambda_min`` is no condition number; the probe
reports ``abs_min_over_max = |lambda_min| / lambda_max`` and ``lambda_max_over_min`` only when
every repeat's spectrum is positive (``lambda_min > 0``).

Weight decay: by default the Hessian is that of the data loss. With
``probe.include_weight_decay`` it is that of the objective the optimizer's coupled L2 term
minimises, ``L + wd/2 |theta|^2``, which adds ``wd`` to every eigenvalue (SGD, Adam); AdamW's
decoupled decay (Loshchilov & Hutter 2019) is not the gradient of any loss and is never added.

``probe.backend: pyhessian`` also runs PyHessian's power iteration (Yao et al. 2020,
"PyHessian: Neural Networks Through the Lens of the Hessian") on the same samples for a
side-by-side check of the top eigenvalues.
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

from losslands.curvature import hutchinson_trace, lanczos, slq_density
from losslands.flat import num_params
from losslands.probes.base import ProbeConfig, ProbeContext, ProbeInfo, Scalar
from losslands.stats import mean_std

log = logging.getLogger(__name__)

BACKENDS = ("losslands", "pyhessian")


@dataclass
class Config(ProbeConfig):
    """Options of ``probe=lanczos`` (``conf/probe/lanczos.yaml`` documents each)."""

    name: str = "lanczos"
    n_samples: int = 5000
    repeats: int = 3
    k: int = 10
    max_iters: int = 200
    tol: float = 1.0e-4
    hutchinson_samples: int = 100
    slq_vectors: int = 10
    slq_iters: int = 80
    grid_size: int = 500
    include_weight_decay: bool = False
    chunk_size: int | None = 1000
    seed: int = 0
    backend: str = "losslands"
    pyhessian_top_n: int = 3
    pyhessian_max_iters: int = 100
    pyhessian_tol: float = 1.0e-3

    def check(self) -> None:
        for key, low in (("n_samples", 1), ("repeats", 1), ("k", 1), ("hutchinson_samples", 2),
                         ("slq_vectors", 1), ("slq_iters", 1), ("grid_size", 2),
                         ("pyhessian_top_n", 1), ("pyhessian_max_iters", 1)):
            self.at_least(key, low)
        self.at_least("max_iters", 2 * self.k)
        self.positive("tol")
        self.positive("pyhessian_tol")
        if self.chunk_size is not None:
            self.at_least("chunk_size", 1)
        self.one_of("backend", BACKENDS)


INFO = ProbeInfo(
    title="Hessian spectrum",
    order=10,
    scalars={
        "lambda_max": Scalar("largest Hessian eigenvalue, mean over disjoint probe subsets", "loss"),
        "lambda_max_std": Scalar("std of lambda_max over the subsets", "loss"),
        "lambda_min": Scalar("smallest Hessian eigenvalue, mean over the subsets", "loss"),
        "lambda_min_std": Scalar("std of lambda_min over the subsets", "loss"),
        "abs_min_over_max": Scalar("|lambda_min| / lambda_max: how indefinite the Hessian is"),
        "lambda_max_over_min": Scalar("lambda_max / lambda_min, only when every subset's spectrum is positive"),
        "trace": Scalar("Hutchinson estimate of tr(H), mean over the subsets", "loss"),
        "trace_stderr": Scalar("Hutchinson probe noise of the mean trace (standard error)", "loss"),
        "trace_std": Scalar("std of the trace over the subsets", "loss"),
        "negative_mass": Scalar("SLQ quadrature weight on negative Ritz nodes"),
        "negative_mass_smoothed": Scalar("mass of the smoothed SLQ density below 0"),
        "matvecs": Scalar("Hessian-vector products spent, all subsets", "products"),
        "pyhessian_lambda_max": Scalar("PyHessian's top eigenvalue (backend=pyhessian)", "loss"),
    },
    table=["lambda_max", "lambda_min", "abs_min_over_max", "lambda_max_over_min", "trace",
           "negative_mass", "negative_mass_smoothed"],
    definition=(
        "**Spectrum** (`probe=lanczos`): Hessian of the mean cross-entropy over the probe subset "
        "(no weight decay term unless `probe.include_weight_decay`). Extreme eigenvalues by "
        "Lanczos with full reorthogonalisation (Lanczos 1950; Paige 1972), stopped when every "
        "extreme Ritz pair has residual ‖Hv − θv‖ ≤ tol·max|θ|. λmax/λmin are mean ± std over "
        "`probe.repeats` disjoint subsets. |λmin|/λmax measures how indefinite the Hessian is; "
        "it is not a condition number. Trace by Hutchinson's estimator (Rademacher probes, ± "
        "standard error; Hutchinson 1989). Density and negative mass by stochastic Lanczos "
        "quadrature (Ghorbani et al. 2019): the negative mass is the quadrature weight on "
        "negative Ritz values, averaged over probe vectors; it is smoothed by the Gaussian "
        "kernel width and biased toward zero for tiny negative mass."
    ),
)


def _one_repeat(ctx: ProbeContext, cfg: Config, index: int) -> dict[str, Any]:
    start = time.perf_counter()
    x, y = ctx.probe_data(cfg.n_samples, index=index)
    op = ctx.hessian(x, y, include_weight_decay=cfg.include_weight_decay, chunk_size=cfg.chunk_size)
    seed = cfg.seed + index
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        eig = lanczos(op, cfg.k, max_iters=cfg.max_iters, tol=cfg.tol, seed=seed)
    for w in caught:
        log.warning("lanczos subset %d: %s", index, w.message)
    trace = hutchinson_trace(op, n_samples=cfg.hutchinson_samples, seed=seed)
    density = slq_density(
        op, n_vectors=cfg.slq_vectors, n_iters=cfg.slq_iters, grid_size=cfg.grid_size, seed=seed
    )
    out = {
        "index": index,
        "top": eig.top.tolist(),
        "bottom": eig.bottom.tolist(),
        "top_residuals": eig.top_residuals.tolist(),
        "bottom_residuals": eig.bottom_residuals.tolist(),
        "iterations": eig.iterations,
        "converged": eig.converged,
        "warnings": [str(w.message) for w in caught],
        "trace": trace.trace,
        "trace_stderr": trace.stderr,
        "slq_trace": density.trace_estimate,
        "negative_mass": density.negative_mass,
        "negative_mass_smoothed": density.negative_mass_smoothed,
        "sigma": density.sigma,
        "density_grid": density.grid.tolist(),
        "density": density.density.tolist(),
        "matvecs": op.n_matvecs,
    }
    if cfg.backend == "pyhessian":
        out["pyhessian_top"] = [v + op.weight_decay for v in pyhessian_top(ctx, x, y, cfg, seed)]
    out["seconds"] = time.perf_counter() - start
    return out


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


def run(ctx: ProbeContext, cfg: Config) -> dict[str, Any]:
    dim = num_params(ctx.model)
    if 2 * cfg.k > dim:
        raise ValueError(
            f"probe.k={cfg.k} asks for {2 * cfg.k} extreme eigenvalues but the model has "
            f"{dim} parameters: set probe.k <= {dim // 2}"
        )
    if cfg.n_samples * cfg.repeats > ctx.data.num_train:
        raise ValueError(
            f"probe.n_samples x probe.repeats = {cfg.n_samples * cfg.repeats} disjoint images, "
            f"but the training split has {ctx.data.num_train}: lower one of them"
        )
    repeats = [  # each finished subset is saved: a killed job resumes at the next one
        ctx.partial.cached(f"subset={i}", lambda i=i: _one_repeat(ctx, cfg, i))
        for i in ctx.progress(range(cfg.repeats), desc="lanczos repeats")
    ]
    lam_max, lam_max_std = _mean_std([r["top"][0] for r in repeats])
    lam_min, lam_min_std = _mean_std([r["bottom"][0] for r in repeats])
    ratios = [abs(r["bottom"][0]) / r["top"][0] if r["top"][0] > 0 else math.nan for r in repeats]
    positive = all(r["bottom"][0] > 0 for r in repeats)
    trace, trace_std = _mean_std([r["trace"] for r in repeats])
    neg, neg_std = _mean_std([r["negative_mass"] for r in repeats])
    neg_s, neg_s_std = _mean_std([r["negative_mass_smoothed"] for r in repeats])
    k = cfg.k
    top = [_mean_std([r["top"][j] for r in repeats]) for j in range(k)]
    bottom = [_mean_std([r["bottom"][j] for r in repeats]) for j in range(k)]
    wd = ctx.coupled_weight_decay if cfg.include_weight_decay else 0.0
    return {
        "n_samples": cfg.n_samples,
        "repeats": len(repeats),
        "k": k,
        "dim": dim,
        "weight_decay": wd,
        "backend": cfg.backend,
        "lambda_max": lam_max,
        "lambda_max_std": lam_max_std,
        "lambda_min": lam_min,
        "lambda_min_std": lam_min_std,
        "top_mean": [m for m, _ in top],
        "top_std": [s for _, s in top],
        "bottom_mean": [m for m, _ in bottom],
        "bottom_std": [s for _, s in bottom],
        "abs_min_over_max": _mean_std(ratios)[0],
        "abs_min_over_max_std": _mean_std(ratios)[1],
        "lambda_max_over_min": (
            _mean_std([r["top"][0] / r["bottom"][0] for r in repeats])[0] if positive else None
        ),
        "trace": trace,
        "trace_std": trace_std,
        # Probe noise of the mean of the per-repeat estimates (independent probes per repeat).
        "trace_stderr": math.sqrt(sum(r["trace_stderr"] ** 2 for r in repeats)) / len(repeats),
        "negative_mass": neg,
        "negative_mass_std": neg_std,
        "negative_mass_smoothed": neg_s,
        "negative_mass_smoothed_std": neg_s_std,
        "matvecs": sum(r["matvecs"] for r in repeats),
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
        "lambda_max",
        "lambda_max_std",
        "lambda_min",
        "lambda_min_std",
        "abs_min_over_max",
        "lambda_max_over_min",
        "trace",
        "trace_stderr",
        "trace_std",
        "negative_mass",
        "negative_mass_smoothed",
        "matvecs",
    )
    out = {name: result[name] for name in names}
    if "pyhessian_lambda_max" in result:
        out["pyhessian_lambda_max"] = result["pyhessian_lambda_max"]
    return out


def plot(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_eig, ax_den = fig.subplots(1, 2)
    for r in result["per_repeat"]:
        k = len(r["top"])
        (line,) = ax_eig.plot(range(1, k + 1), r["top"], "o-", label=f"subset {r['index']}: top")
        ax_eig.plot(
            range(1, k + 1),
            r["bottom"],
            "s--",
            color=line.get_color(),
            label=f"subset {r['index']}: bottom",
        )
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
        title=f"extreme Hessian eigenvalues (n={result['n_samples']})",
    )
    ax_eig.legend(fontsize=7)
    ax_den.axvline(0.0, color="grey", lw=0.5)
    ax_den.set(
        xlabel="eigenvalue",
        ylabel="density",
        title=f"SLQ density, negative mass {result['negative_mass']:.3g}",
    )
    ax_den.legend(fontsize=7)
    return fig


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
            for j, (value, res) in enumerate(zip(r[end], r[f"{end}_residuals"], strict=True)):
                eigen.append([r["index"], end, j + 1, value, res])
        for j, value in enumerate(r.get("pyhessian_top", [])):
            eigen.append([r["index"], "pyhessian_top", j + 1, value, None])
    return {
        "density": (["subset", "eigenvalue", "density"], density),
        "eigenvalues": (["subset", "end", "rank", "eigenvalue", "residual"], eigen),
    }
