"""Figures of a sweep: one function per figure, each ``jobs -> Figure | None``."""

from __future__ import annotations

import warnings
from collections import defaultdict
from collections.abc import Iterator

import numpy as np
from matplotlib.figure import Figure
from matplotlib.ticker import LogFormatter

from losslands.report.load import Job, canonical_pair, probe_records, trainings

COLORS = {"sgd": "tab:blue", "momentum": "tab:orange", "adamw": "tab:green", "adam": "tab:red"}
# Pairs of two optimizers get colours of their own, the same in every figure and sweep (a pair
# named by its first optimizer would share a colour with every pair that starts with it); a
# cross-seed pair keeps its optimizer's.
PAIR_COLORS = {"sgd-momentum": "tab:purple", "sgd-adamw": "tab:brown", "momentum-adamw": "tab:pink",
               "sgd-adam": "tab:olive", "momentum-adam": "tab:cyan", "adamw-adam": "darkred"}
# The fields of a path record along its position (mapped to 1 - t when the path is flipped) and
# the values sampled on them (reversed with it).
_PATH_POSITIONS = ("alphas", "t", "dense_t", "linear_t", "pivot_t")
_PATH_VALUES = ("train_loss", "test_acc", "test_loss", "train_acc", "losses", "dense_losses", "linear_losses",
                "pivot_losses")


def _color(name: str) -> str:
    return COLORS.get(name, "tab:gray")


def _panels(n: int, width: float = 5.5, height: float = 4.0) -> tuple[Figure, np.ndarray]:
    """A figure with ``n`` side-by-side axes."""
    fig = Figure(figsize=(width * n, height))
    return fig, np.atleast_1d(fig.subplots(1, n))


class _PlainLog(LogFormatter):
    """Labels the ticks matplotlib's log formatter labels, as plain numbers (0.9, not 9e-01)."""

    def __call__(self, x, pos=None):
        return f"{x:g}" if super().__call__(x, pos) else ""


def _done(fig: Figure, axes) -> Figure:
    """Legends on every axis that has labelled artists, plain numbers on log axes (1.2, not
    1.2×10⁰, where a narrow range labels minor ticks), then a tight layout."""
    for ax in np.atleast_1d(axes):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
        if ax.get_yscale() == "log":
            ax.yaxis.set_major_formatter(_PlainLog())
            ax.yaxis.set_minor_formatter(_PlainLog(labelOnlyBase=False, minor_thresholds=(2, 0.5)))
    fig.tight_layout()
    return fig


def _band(ax, xs, curves, label, color) -> None:
    """Mean curve with a ±1 std band over seeds (curves truncated to a common length)."""
    n = min(len(c) for c in curves)
    arr = np.asarray([c[:n] for c in curves], dtype=float)
    m = np.nanmean(arr, axis=0)
    ax.plot(xs[:n], m, color=color, label=f"{label} (n={len(curves)})")
    if len(curves) > 1:
        sd = np.nanstd(arr, axis=0, ddof=1)
        ax.fill_between(xs[:n], m - sd, m + sd, color=color, alpha=0.2)


def training_curves(jobs: list[Job]) -> Figure | None:
    by_opt: dict[str, list[dict]] = defaultdict(list)
    for s in trainings(jobs):
        if s.get("history"):
            by_opt[s["config"]["optimizer"]["name"]].append(s)
    if not by_opt:
        return None
    fig, axes = _panels(2)
    for opt, runs in by_opt.items():
        epochs = [h["epoch"] for h in runs[0]["history"]]
        for ax, key in ((axes[0], "loss"), (axes[1], "acc")):
            _band(ax, epochs, [[h.get(f"val/{key}", np.nan) for h in r["history"]] for r in runs], f"{opt} val", _color(opt))
            ax.plot(epochs, np.mean([[h.get(f"train/{key}", np.nan) for h in r["history"]][: len(epochs)] for r in runs], axis=0),
                    color=_color(opt), ls="--", alpha=0.7, label=f"{opt} train")
    axes[0].set(xlabel="epoch", ylabel="cross-entropy", title="Loss")
    axes[1].set(xlabel="epoch", ylabel="accuracy", title="Accuracy")
    return _done(fig, axes)


def curvature_during_training(jobs: list[Job]) -> Figure | None:
    by_opt: dict[str, list[list[dict]]] = defaultdict(list)
    for s in trainings(jobs):
        if s.get("probe_history"):
            by_opt[s["config"]["optimizer"]["name"]].append(s["probe_history"])
    if not by_opt:
        return None
    keys = [k for k in ("lambda_max", "trace", "noise_ratio") if any(k in h for hs in by_opt.values() for r in hs for h in r)]
    fig, axes = _panels(len(keys), width=4, height=3.6)
    for ax, key in zip(axes, keys, strict=False):
        for opt, runs in by_opt.items():
            epochs = [h["epoch"] for h in runs[0]]
            _band(ax, epochs, [[h.get(key, np.nan) for h in r] for r in runs], opt, _color(opt))
        ax.set(xlabel="epoch", title=key.replace("_", " "), yscale="log" if key != "noise_ratio" else "linear")
    return _done(fig, axes)


def scalar_bars(jobs: list[Job], probe: str, metrics: list[str], title: str) -> Figure | None:
    """Mean ± std bars per optimizer for a few scalars of one probe."""
    recs = probe_records(jobs, probe)
    if not recs:
        return None
    fig, axes = _panels(len(metrics), width=3.2, height=3.2)
    opts = sorted({r["optimizer"] for r in recs})
    for ax, m in zip(axes, metrics, strict=False):
        vals = [[r["scalars"].get(m) for r in recs if r["optimizer"] == o and r["scalars"].get(m) is not None] for o in opts]
        means = [np.mean(v) if v else np.nan for v in vals]
        sds = [np.std(v, ddof=1) if len(v) > 1 else 0 for v in vals]
        ax.bar(opts, means, yerr=sds, color=[_color(o) for o in opts], capsize=4)
        ax.set_title(m, fontsize=9)
    fig.suptitle(title)
    return _done(fig, axes)


def all_figures(jobs: list[Job]) -> Iterator[tuple[str, Figure]]:
    """Every figure the sweep has data for; a figure whose records lack a field (e.g. written
    by an older probe version) is skipped with a warning instead of failing the report."""
    named = {"training_curves": training_curves, "curvature_during_training": curvature_during_training,
             **PROBE_FIGURES}
    for name, fn in named.items():
        try:
            fig = fn(jobs)
        except (KeyError, TypeError, IndexError) as e:
            warnings.warn(f"report figure {name!r} skipped: a record lacks {e}", stacklevel=2)
            continue
        if fig is not None:
            yield name, fig


def _by(records: list[dict], key) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        out[key(r)].append(r["result"])
    return dict(sorted(out.items()))


def _flipped(result: dict) -> dict:
    """The curves of a path record drawn from its other end: the fields in ``_PATH_POSITIONS``
    map ``t -> 1 - t`` and those in ``_PATH_VALUES`` are reversed; nothing else changes (the
    scalars, e.g. ``loss_a``, still describe the run's own direction)."""
    out = dict(result)
    for key in _PATH_POSITIONS:
        if key in out:
            out[key] = [1.0 - t for t in reversed(out[key])]
    for key in _PATH_VALUES:
        if key in out:
            out[key] = list(reversed(out[key]))
    return out


def _by_pair(records: list[dict]) -> dict[str, list[dict]]:
    """Path records by pair, named in the report's order (as the tables name them) and oriented
    so that position 0 is the name's first optimizer."""
    out: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        name, flip = canonical_pair(r["result"].get("pair", "?"))
        out[name].append(_flipped(r["result"]) if flip else r["result"])
    return dict(sorted(out.items()))


def _pair_colors(pairs) -> dict[str, str]:
    """A colour per pair: a cross-seed pair (``sgd-sgd``) its optimizer's, the others their own
    (pairs of optimizers outside ``PAIR_COLORS`` share grey)."""
    return {p: (_color(p.split("-")[0]) if len(set(p.split("-"))) == 1 else PAIR_COLORS.get(p, "tab:gray"))
            for p in pairs}


def interpolation_curves(jobs: list[Job]) -> Figure | None:
    by_pair = _by_pair(probe_records(jobs, "interpolation"))
    if not by_pair:
        return None
    fig, axes = _panels(2)
    colors = _pair_colors(by_pair)
    for pair, results in by_pair.items():
        alphas = results[0]["alphas"]

        def on_grid(r, key, alphas=alphas):
            # a record run the other way on a grid not symmetric about 1/2 lies on other alphas
            return r[key] if r["alphas"] == alphas else list(np.interp(alphas, r["alphas"], r[key]))

        _band(axes[0], alphas, [on_grid(r, "train_loss") for r in results], f"{pair} train", colors[pair])
        _band(axes[1], alphas, [on_grid(r, "test_acc") for r in results], f"{pair} test", colors[pair])
    for ax in axes:
        ax.axvline(0, color="k", lw=0.5)
        ax.axvline(1, color="k", lw=0.5)
    axes[0].set(xlabel="alpha", ylabel="loss (probe subset)", yscale="log", title="Linear interpolation: loss")
    axes[1].set(xlabel="alpha", ylabel="test accuracy", title="Linear interpolation: accuracy")
    return _done(fig, axes)


def path_curves(jobs: list[Job]) -> Figure | None:
    """AutoNEB and Bezier paths against the straight line, one panel per optimizer pair."""
    neb = _by_pair(probe_records(jobs, "autoneb"))
    bez = _by_pair(probe_records(jobs, "curve"))
    pairs = sorted(set(neb) | set(bez))
    if not pairs:
        return None
    fig, axes = _panels(len(pairs), width=4, height=3.6)
    for ax, pair in zip(axes, pairs, strict=False):
        for i, r in enumerate(neb.get(pair, [])):
            ax.plot(r["dense_t"], r["dense_losses"], color="tab:green", alpha=0.8, label="AutoNEB" if i == 0 else None)
            ax.plot(r["linear_t"], r["linear_losses"], color="k", ls="--", alpha=0.6, label="straight line" if i == 0 else None)
        for i, r in enumerate(bez.get(pair, [])):
            ax.plot(r["t"], r["losses"], color="tab:purple", alpha=0.8, label="Bezier" if i == 0 else None)
            if pair not in neb:
                ax.plot(r["linear_t"], r["linear_losses"], color="k", ls="--", alpha=0.6, label="straight line" if i == 0 else None)
        ax.set(title=pair, xlabel="position along the path", ylabel="loss", yscale="log")
    return _done(fig, axes)


def intrinsic_dimension(jobs: list[Job]) -> Figure | None:
    """Test accuracy of every subspace training per optimizer (searched d differ between seeds;
    filled: reached the target, open: missed it), the 90% targets (dotted) and each job's
    d_int90 (dashed)."""
    by_opt = _by(probe_records(jobs, "intrinsic_dim"), lambda r: r["optimizer"])
    if not by_opt:
        return None
    fig, (ax,) = _panels(1, width=6)
    for opt, results in by_opt.items():
        runs = [(run["d"], run["test_acc"], run.get("stop_reason") == "target")
                for r in results for run in r.get("runs", [])]
        # a run that reached the target stopped there: its accuracy is the one at the stop
        for hit, style in ((True, {"label": opt}), (False, {"mfc": "none"})):
            pts = sorted((d, a) for d, a, h in runs if h == hit)
            ax.plot([d for d, _ in pts], [a for _, a in pts], "o", ms=4, color=_color(opt), **style)
        ax.axhline(np.mean([r["target_acc"] for r in results]), color=_color(opt), ls=":", lw=1)
        for r in results:
            if r.get("d_int90") is not None:
                ax.axvline(r["d_int90"], color=_color(opt), ls="--", lw=0.8)
    ax.set(xscale="log", xlabel="subspace dimension d", ylabel="test accuracy")
    ax.set_title("Intrinsic dimension (filled: reached the target, stopped there; open: missed it)\n"
                 "dotted: 90% of the full model's accuracy; dashed: d_int90", fontsize=9)
    ax.legend(fontsize=8)
    return _done(fig, ax)


def spectra(jobs: list[Job]) -> Figure | None:
    """Top and bottom Hessian eigenvalues per optimizer, and the SLQ densities."""
    by_opt = _by(probe_records(jobs, "lanczos"), lambda r: r["optimizer"])
    if not by_opt:
        return None
    fig, axes = _panels(2)
    for opt, results in by_opt.items():
        for i, r in enumerate(results):
            top, bottom = r["top_mean"], r["bottom_mean"]
            ax = axes[0]
            ax.plot(range(1, len(top) + 1), top, "o-", color=_color(opt), label=f"{opt} top" if i == 0 else None)
            ax.plot(range(1, len(bottom) + 1), bottom, "s--", color=_color(opt), label=f"{opt} bottom" if i == 0 else None)
            for j, rep in enumerate(r.get("per_repeat", [])[:1]):
                axes[1].plot(rep["density_grid"], np.maximum(rep["density"], 1e-12), color=_color(opt),
                             alpha=0.8, label=opt if i == 0 and j == 0 else None)
    axes[0].axhline(0, color="k", lw=0.5)
    axes[0].set(xlabel="rank", ylabel="eigenvalue", yscale="symlog", title="Extreme Hessian eigenvalues")
    axes[1].set(xlabel="eigenvalue", ylabel="density", yscale="log", title="Spectral density (SLQ)")
    return _done(fig, axes)


def perturbation_curves(jobs: list[Job]) -> Figure | None:
    by_opt = _by(probe_records(jobs, "perturbation"), lambda r: r["optimizer"])
    if not by_opt:
        return None
    fig, axes = _panels(2)
    for opt, results in by_opt.items():
        for i, r in enumerate(results):
            axes[0].plot(r["eps"], r["loss_top"], color=_color(opt), label=f"{opt} top eigvec" if i == 0 else None)
            axes[0].plot(r["eps"], r["loss_random"], color=_color(opt), ls=":", label=f"{opt} random" if i == 0 else None)
            axes[1].plot(r["magnitudes"], r["curvature_top"], "o-", color=_color(opt), label=opt if i == 0 else None)
            axes[1].axhline(r["lambda_top"], color=_color(opt), lw=0.8, ls="--")
    axes[0].set(xscale="symlog", xlabel="eps", ylabel="loss", yscale="log", title="Loss along the top eigenvector")
    axes[1].set(xscale="log", xlabel="|eps|", ylabel="central-difference curvature",
                title="Curvature vs step (dashed: Lanczos lambda_top)")
    return _done(fig, axes)


def noise_vs_n(jobs: list[Job]) -> Figure | None:
    by_opt = _by(probe_records(jobs, "noise"), lambda r: r["optimizer"])
    if not by_opt:
        return None
    fig, (ax,) = _panels(1, width=6)
    for opt, results in by_opt.items():
        for i, r in enumerate(results):
            pts = sorted(r.get("by_n", []), key=lambda p: p["n"])
            ax.plot([p["n"] for p in pts], [p["ratio"] for p in pts], "o-", color=_color(opt), label=opt if i == 0 else None)
    ax.set(xscale="log", xlabel="samples n", ylabel="lambda_C / lambda_H (loss)", title="Noise vs curvature: dependence on n")
    return _done(fig, ax)


PROBE_FIGURES = {
    "spectra": spectra,
    "perturbation": perturbation_curves,
    "noise_vs_n": noise_vs_n,
    "interpolation": interpolation_curves,
    "paths": path_curves,
    "intrinsic_dimension": intrinsic_dimension,
}




def to_png(fig: Figure, dpi: int = 100) -> bytes:
    """PNG bytes of a figure (for notebooks: ``IPython.display.Image(to_png(fig))``)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    return buf.getvalue()
