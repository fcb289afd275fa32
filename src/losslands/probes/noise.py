"""``probe=noise``: gradient-noise covariance against the Hessian on the probe subset.

:func:`losslands.curvature.gradient_noise` on ``probe.n_samples`` unaugmented training images
(model in eval mode): the top eigenvalue ``lambda_c`` of the centred per-sample gradient
covariance ``C`` (Zhu et al. 2019, "The Anisotropic Noise in Stochastic Gradient Descent"), the
top Hessian eigenvalue ``lambda_h`` on the same samples, ``ratio = lambda_c / lambda_h``, the
alignment of the noise with the sharpest direction (``alignment = v_H^T C v_H / lambda_h`` and
``alignment_c = v_H^T C v_H / lambda_c``) and ``trace_c = tr(C)``. A mini-batch of ``B`` samples
drawn with replacement has gradient-noise covariance ``C / B`` (Jastrzebski et al. 2018, "Three
Factors Influencing Minima in SGD"), so ``lambda_c_over_b`` uses the training batch size
(``ctx.batch_size``) (sampling without replacement from ``N`` images scales this by
``(N - B) / (N - 1)``, negligible for ``B << N``).

The main estimate is repeated on ``probe.repeats`` disjoint subsets (mean and std). The
dependence on ``n`` is traced on nested prefixes of subset 0 (``ctx.probe_data(n, 0)`` is the
first ``n`` images of the same fixed permutation), so every point of the curve adds samples to
the previous one and the curve shows the estimator's ``n``-dependence rather than
subset-to-subset scatter. The Gram-matrix estimate of ``lambda_c`` is biased upward by about
``tr(C) / n`` (the sample covariance's noise floor); ``lambda_c_corrected = lambda_c -
trace_c / n`` is a rough first-order correction, not an unbiased estimator.

Memory: the per-sample gradients take ``n * D`` numbers (5000 x 183k floats = 3.7 GB for
small_cnn).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

from matplotlib.figure import Figure

from losslands.curvature import gradient_noise
from losslands.probes.base import ProbeConfig, ProbeContext, ProbeInfo, Scalar
from losslands.stats import mean_std

log = logging.getLogger(__name__)

FIELDS = ("lambda_c", "lambda_h", "ratio", "alignment", "alignment_c", "trace_c", "grad_norm")


@dataclass
class Config(ProbeConfig):
    """Options of ``probe=noise`` (``conf/probe/noise.yaml`` documents each)."""

    name: str = "noise"
    n_samples: int = 5000
    repeats: int = 3
    ns: list[int] = field(default_factory=lambda: [32, 128, 512, 2048])
    max_iters: int = 100
    tol: float = 1.0e-5
    chunk_size: int = 256
    seed: int = 0

    def check(self) -> None:
        for key, low in (("n_samples", 2), ("repeats", 1), ("max_iters", 2), ("chunk_size", 1)):
            self.at_least(key, low)
        self.positive("tol")
        if any(isinstance(n, bool) or not isinstance(n, int) or n < 2 for n in self.ns):
            raise ValueError(f"probe.ns={list(self.ns)} must be a list of integers >= 2 (sample counts)")


INFO = ProbeInfo(
    title="Gradient noise vs curvature",
    order=20,
    scalars={
        "lambda_c": Scalar("top eigenvalue of the per-sample gradient covariance C", "loss²"),
        "lambda_c_std": Scalar("std of lambda_c over the subsets", "loss²"),
        "lambda_h": Scalar("top Hessian eigenvalue on the same samples", "loss"),
        "lambda_h_std": Scalar("std of lambda_h over the subsets", "loss"),
        "ratio": Scalar("lambda_c / lambda_h (loss² / loss: not a pure number)", "loss"),
        "ratio_std": Scalar("std of the ratio over the subsets", "loss"),
        "alignment": Scalar("v_H^T C v_H / lambda_h: noise along the sharpest direction per unit curvature (units of loss, unbounded)", "loss"),
        "alignment_c": Scalar("v_H^T C v_H / lambda_c: the fraction of the top noise variance along the sharpest direction, in [0, 1]"),
        "trace_c": Scalar("tr(C)", "loss²"),
        "lambda_c_over_b": Scalar("lambda_c / B: the top noise eigenvalue of a mini-batch of B", "loss²"),
        "lambda_c_corrected": Scalar("lambda_c - tr(C)/n: first-order bias correction", "loss²"),
        "ratio_n<n>": Scalar("ratio on the first n images of subset 0", "loss"),
        "lambda_c_over_b_n<n>": Scalar("lambda_c / B on the first n images of subset 0", "loss²"),
    },
    table=["lambda_c", "lambda_h", "ratio", "alignment_c", "trace_c", "lambda_c_over_b"],
    table_prefixes=["ratio_n"],
    definition=(
        "**Noise** (`probe=noise`): per-sample gradients g_i on n probe images; C = (1/n) Σ "
        "(g_i − ḡ)(g_i − ḡ)ᵀ (centred, per-sample). SGD's mini-batch noise covariance is C/B "
        "for batch size B. λC = top eigenvalue of C via the n×n Gram matrix (exact), λH = top "
        "Hessian eigenvalue on the same samples; ratio = λC/λH; alignment = v_Hᵀ C v_H / λH "
        "(Jastrzębski et al. 2018; Zhu et al. 2019; Thomas et al. 2020), in units of loss; the "
        "table shows alignment_c = v_Hᵀ C v_H / λC, bounded by 1. The estimate of λC is "
        "biased upward when n is small relative to the rank of C, roughly by tr(C)/n: compare "
        "the values across n."
    ),
)


def estimate(ctx: ProbeContext, cfg: Config, n: int, index: int) -> dict[str, Any]:
    """:func:`gradient_noise` on probe subset ``index`` of ``n`` images, as a JSON-able dict."""
    start = time.perf_counter()
    x, y = ctx.probe_data(n, index=index)
    gn = gradient_noise(
        ctx.model,
        ctx.loss_fn,
        x,
        y,
        chunk_size=cfg.chunk_size,
        lanczos_kwargs={"max_iters": cfg.max_iters, "tol": cfg.tol, "seed": cfg.seed},
    )
    out = {"n": gn.n, "index": index, **{f: float(getattr(gn, f)) for f in FIELDS}}
    out["lambda_c_corrected"] = out["lambda_c"] - out["trace_c"] / gn.n
    out["lambda_c_over_b"] = out["lambda_c"] / ctx.batch_size
    out["lambda_h_residual"] = gn.lambda_h_residual
    out["lambda_h_converged"] = gn.lambda_h_converged
    out["seconds"] = time.perf_counter() - start
    return out


def run(ctx: ProbeContext, cfg: Config) -> dict[str, Any]:
    ns = sorted(set(cfg.ns))
    n_main = cfg.n_samples
    if n_main * cfg.repeats > ctx.data.num_train:
        raise ValueError(
            f"probe.n_samples x probe.repeats = {n_main * cfg.repeats} disjoint images, but the "
            f"training split has {ctx.data.num_train}: lower one of them"
        )
    skipped = [n for n in ns if n > n_main]
    if skipped:
        log.warning("noise: skipping probe.ns=%s larger than probe.n_samples=%d", skipped, n_main)
    # each finished estimate is saved: a killed job resumes at the next one
    def saved(n: int, index: int) -> dict[str, Any]:
        return ctx.partial.cached(f"n={n},subset={index}", lambda: estimate(ctx, cfg, n, index))

    repeats = [
        saved(n_main, i) for i in ctx.progress(range(cfg.repeats), desc="noise repeats")
    ]
    sweep = [
        repeats[0] if n == n_main else saved(n, 0)
        for n in ctx.progress([n for n in ns if n <= n_main], desc="noise vs n")
    ]
    batch_size = ctx.batch_size
    out: dict[str, Any] = {"n_samples": n_main, "repeats": len(repeats), "batch_size": batch_size}
    for key in (*FIELDS, "lambda_c_corrected"):
        out[key], out[f"{key}_std"], _ = mean_std([r[key] for r in repeats], drop_missing=False)
    out["lambda_c_over_b"] = out["lambda_c"] / batch_size
    out["lambda_h_converged"] = all(r["lambda_h_converged"] for r in (*repeats, *sweep))
    if not out["lambda_h_converged"]:
        log.warning("noise: lambda_H did not converge everywhere; raise probe.max_iters or tol")
    out["per_repeat"] = repeats
    out["by_n"] = sweep
    out["ns_skipped"] = skipped
    return out


def scalars(result: dict[str, Any]) -> dict[str, float]:
    names = (
        "lambda_c",
        "lambda_c_std",
        "lambda_h",
        "lambda_h_std",
        "ratio",
        "ratio_std",
        "alignment",
        "alignment_c",
        "trace_c",
        "lambda_c_over_b",
        "lambda_c_corrected",
    )
    out = {name: result[name] for name in names}
    out.update({f"ratio_n{r['n']}": r["ratio"] for r in result["by_n"]})
    out.update({f"lambda_c_over_b_n{r['n']}": r["lambda_c_over_b"] for r in result["by_n"]})
    return out


def _or_zero(std: float) -> float:
    return std if std == std else 0.0  # NaN (one repeat) draws no error bar


def plot(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    ax_lam, ax_ratio = fig.subplots(1, 2)
    points = sorted([*result["by_n"], *result["per_repeat"][:1]], key=lambda r: r["n"])
    points = list({r["n"]: r for r in points}.values())
    n = [r["n"] for r in points]
    for key, label, style in (
        ("lambda_c", r"$\lambda_C$", "o-"),
        ("lambda_c_corrected", r"$\lambda_C - \mathrm{tr}\,C/n$", "o:"),
        ("lambda_h", r"$\lambda_H$", "s-"),
    ):
        (line,) = ax_lam.plot(n, [r[key] for r in points], style, label=label)
        ax_lam.errorbar(
            [result["n_samples"]],
            [result[key]],
            yerr=[_or_zero(result[f"{key}_std"])],
            fmt="none",
            color=line.get_color(),
            capsize=4,
        )
    ax_lam.set_xscale("log")
    ax_lam.set(
        xlabel="samples n (nested prefixes of probe subset 0)",
        ylabel="top eigenvalue",
        title="noise covariance vs Hessian",
    )
    ax_lam.legend(fontsize=8)
    ax_ratio.plot(n, [r["ratio"] for r in points], "o-", label=r"$\lambda_C/\lambda_H$")
    ax_ratio.errorbar(
        [result["n_samples"]],
        [result["ratio"]],
        yerr=[_or_zero(result["ratio_std"])],
        fmt="none",
        color="k",
        capsize=4,
        label=f"mean +- std over {result['repeats']} subsets",
    )
    ax_ratio.set_xscale("log")
    ax_ratio.set(xlabel="samples n", ylabel="ratio (loss)", title="noise / curvature ratio")
    ax_ratio.legend(fontsize=8)
    return fig


def lines(result: dict[str, Any]) -> dict[str, tuple[str, dict[str, tuple[list, list]]]]:
    points = sorted(result["by_n"], key=lambda r: r["n"])
    n = [r["n"] for r in points]
    keys = ("lambda_c", "lambda_c_corrected", "lambda_h")
    return {"top_eigenvalue_vs_n": ("n", {k: (n, [r[k] for r in points]) for k in keys})}


def tables(result: dict[str, Any]) -> dict[str, tuple[list[str], list[list[Any]]]]:
    cols = ["n", "subset", *FIELDS, "lambda_c_corrected"]
    rows = [
        [r["n"], r["index"], *[r[c] for c in cols[2:]]]
        for r in [*result["by_n"], *result["per_repeat"]]
    ]
    return {"by_n": (cols, rows)}
