"""``probe=intrinsic_dim``: how many random directions training needs (Li et al. 2018).

Li, Farkhoor, Liu & Yosinski (2018), "Measuring the Intrinsic Dimension of Objective
Landscapes": train only ``z`` in ``theta = theta0 + P z``, ``P`` a fixed random ``D x d``
projection with unit-norm columns and ``theta0`` the job's own seeded initialisation; ``d_int90``
is the smallest ``d`` whose test accuracy reaches 90% of the full-space model's (the trained
checkpoint of this job). The sweep over ``dims`` runs :func:`losslands.subspace.train_in_subspace`.

Choices (ours): ``z`` is trained with the job's optimizer and hyper-parameters (so weight decay
acts on ``z``, i.e. pulls ``theta`` towards ``theta0``, not towards 0) for ``epochs`` passes over
shuffled training batches, augmented when the job's training was (``augment: null``), so the
subspace and full-space models see the same recipe. BatchNorm runs on batch statistics while
training; its statistics are recomputed on training batches before testing.
``d_int90_interp`` interpolates linearly in ``log d`` between the last ``d`` below the target and
the first at or above it. Each finished ``(seed, d)`` run is saved at once (``ctx.partial``), so a
killed job resumes at the next one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from losslands.evaluate import PointEvaluator, evaluate
from losslands.flat import batch_loss, get_flat
from losslands.probes.base import ProbeConfig, ProbeContext, ProbeInfo, Scalar
from losslands.subspace import train_in_subspace

PROJECTIONS = ("fastfood", "sparse", "dense")


@dataclass
class Config(ProbeConfig):
    """Options of ``probe=intrinsic_dim`` (``conf/probe/intrinsic_dim.yaml`` documents each)."""

    name: str = "intrinsic_dim"
    dims: list[int] = field(default_factory=lambda: [10, 30, 100, 300, 1000, 3000, 10000])
    seeds: list[int] = field(default_factory=lambda: [0])
    projection: str = "fastfood"
    epochs: int | None = None
    train_samples: int | None = None
    augment: bool | None = None
    lr: float | None = None
    test_samples: int | None = None
    bn_batches: int = 50

    def check(self) -> None:
        if not self.dims or any(isinstance(d, bool) or not isinstance(d, int) or d < 1
                                for d in self.dims):
            raise ValueError(f"probe.dims={list(self.dims)} must be a non-empty list of integers >= 1")
        if not self.seeds:
            raise ValueError("probe.seeds must name at least one projection seed")
        self.one_of("projection", PROJECTIONS)
        for key in ("epochs", "train_samples", "test_samples"):
            if getattr(self, key) is not None:
                self.at_least(key, 1)
        if self.lr is not None:
            self.positive("lr")
        self.at_least("bn_batches", 0)


INFO = ProbeInfo(
    title="Intrinsic dimension",
    order=45,
    scalars={
        "d_int90": Scalar("smallest d whose subspace-trained test accuracy reaches 90% of the full model's", "dimensions"),
        "d_int90_interp": Scalar("d_int90 interpolated linearly in log d", "dimensions"),
        "reached_90": Scalar("1 if some d reached the target, else 0"),
        "d_max": Scalar("the largest d tried", "dimensions"),
        "full_acc": Scalar("the full-space model's test accuracy"),
        "acc_d<d>": Scalar("test accuracy after training in a d-dimensional subspace (mean over projection seeds)"),
    },
    table=["d_int90", "d_int90_interp", "reached_90", "d_max", "full_acc"],
    table_prefixes=["acc_d"],
    definition=(
        "**Intrinsic dimension** (`probe=intrinsic_dim`; Li et al. 2018): train θ0 + Pz over "
        "z ∈ R^d from the initialisation with the job's optimizer; d_int90 = smallest d whose "
        "test accuracy reaches 90% of the full-space model's test accuracy (and a log-linear "
        "interpolated value); reached_90 = fraction of runs where some d did (else d_int90 > "
        "d_max, the largest d tried)."
    ),
)

FRACTION = 0.9


def intrinsic_dimension(
    dims: Sequence[int], accs: Sequence[float], target: float
) -> tuple[float, float]:
    """``(d_int, d_interp)`` for an accuracy curve over subspace dimensions.

    ``d_int`` is the smallest ``d`` with ``acc >= target`` (Li et al. 2018). ``d_interp``
    interpolates linearly in ``log d`` between the largest ``d`` below ``d_int`` and ``d_int``
    (where the curve between them crosses ``target``); when the smallest ``d`` already reaches
    the target both equal it (an upper bound). Both are NaN when no ``d`` reaches the target.
    """
    if len(dims) != len(accs) or not dims:
        raise ValueError(
            f"need one accuracy per dimension, got {len(dims)} dims and {len(accs)} accuracies"
        )
    order = sorted(range(len(dims)), key=lambda i: dims[i])
    d = [float(dims[i]) for i in order]
    a = [float(accs[i]) for i in order]
    hit = next((k for k, acc in enumerate(a) if acc >= target), None)
    if hit is None:
        return math.nan, math.nan
    if hit == 0:
        return d[0], d[0]
    frac = (target - a[hit - 1]) / (a[hit] - a[hit - 1])
    log_d = math.log(d[hit - 1]) + frac * (math.log(d[hit]) - math.log(d[hit - 1]))
    return d[hit], math.exp(log_d)


def run(ctx: ProbeContext, cfg: Config) -> dict[str, Any]:
    if ctx.make_model is None or ctx.make_optimizer is None:
        raise ValueError(
            "probe=intrinsic_dim trains from the model's initialisation with its optimizer: give "
            "the ProbeContext make_model and make_optimizer"
        )
    if cfg.epochs is None and ctx.epochs is None:
        raise ValueError("probe.epochs is null and the training epochs are unknown: set probe.epochs")
    test = ctx.split_batches("test", cfg.test_samples)
    full_acc = evaluate(ctx.model, test)["acc"]
    init = ctx.make_model().to(ctx.device).float()
    theta0 = get_flat(init)
    D = theta0.numel()
    dims = sorted({int(d) for d in cfg.dims})
    if not dims or dims[0] < 1 or dims[-1] > D:
        raise ValueError(
            f"probe.dims must lie in 1..{D} (the parameter count), got {list(cfg.dims)}"
        )
    seeds = [int(s) for s in cfg.seeds]
    augment = ctx.augment if cfg.augment is None else cfg.augment
    epochs = ctx.epochs if cfg.epochs is None else cfg.epochs
    loss = batch_loss(init, ctx.loss_fn)
    evaluator = PointEvaluator(init, ctx.loss_fn, ctx.bn_batches(cfg.bn_batches))
    lr = cfg.lr

    def train_one(d: int, seed: int) -> dict[str, Any]:
        # every run starts from epoch 0 of the same data order: only d and the seed differ
        batches = ctx.train_batches(seed=ctx.seed, augment=augment, n=cfg.train_samples)
        steps = epochs * len(batches)
        with ctx.steps(steps, f"subspace d={d} seed={seed}") as bar:
            res = train_in_subspace(
                loss,
                theta0,
                d,
                projection=cfg.projection,
                optimizer=ctx.make_optimizer,
                steps=steps,
                lr=lr,
                seed=seed,
                batches=batches,
                progress=bar,
            )
        metrics = evaluator.metrics(res.theta, test)
        return {
            "d": d,
            "seed": seed,
            "test_acc": metrics["acc"],
            "test_loss": metrics["loss"],
            "train_loss": res.loss,
            "steps": res.steps,
        }

    acc = np.full((len(seeds), len(dims)), np.nan)
    runs = []
    for s, seed in enumerate(seeds):
        for k, d in enumerate(dims):
            # saved as soon as it finishes: a killed job resumes at the next (seed, d)
            run_sd = ctx.partial.cached(
                f"seed={seed},d={d}", lambda d=d, seed=seed: train_one(d, seed)
            )
            acc[s, k] = run_sd["test_acc"]
            runs.append(run_sd)
    mean = acc.mean(axis=0)
    target = FRACTION * full_acc
    d_int, d_interp = intrinsic_dimension(dims, mean.tolist(), target)
    return {
        "dims": dims,
        "seeds": seeds,
        "acc": acc.tolist(),
        "acc_mean": mean.tolist(),
        "acc_std": (acc.std(axis=0, ddof=1) if len(seeds) > 1 else np.zeros(len(dims))).tolist(),
        "n_seeds": len(seeds),
        "runs": runs,
        "full_acc": full_acc,
        "target_acc": target,
        "d_int90": d_int,
        "d_int90_interp": d_interp,
        "num_params": D,
        "projection": cfg.projection,
        "epochs": epochs,
        "augment": augment,
    }


def scalars(result: dict[str, Any]) -> dict[str, float]:
    out = {
        k: float(result[k]) if result[k] is not None else math.nan
        for k in ("d_int90", "d_int90_interp", "full_acc")
    }
    # say whether some d reached 90% and up to which d was tried (an unreached d_int90 is NaN in
    # memory, None when read back from JSON: both become NaN above)
    out["reached_90"] = float(math.isfinite(out["d_int90"]))
    out["d_max"] = float(max(result["dims"]))
    for d, a in zip(result["dims"], result["acc_mean"], strict=True):
        out[f"acc_d{d}"] = float(a)
    return out


def lines(result: dict[str, Any]) -> dict[str, tuple[str, dict[str, tuple[list, list]]]]:
    acc = {
        f"seed {seed}": (result["dims"], row)
        for seed, row in zip(result["seeds"], result["acc"], strict=True)
    }
    return {"test_acc": ("d", acc)}


def tables(result: dict[str, Any]) -> dict[str, tuple[list[str], list[list[float]]]]:
    rows = [
        [r["d"], r["seed"], r["test_acc"], r["test_loss"], r["train_loss"]] for r in result["runs"]
    ]
    return {"runs": (["d", "seed", "test_acc", "test_loss", "train_loss"], rows)}


def plot(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    dims = result["dims"]
    for row, seed in zip(result["acc"], result["seeds"], strict=True):
        ax.plot(
            dims,
            row,
            ".",
            color="grey",
            alpha=0.6,
            label="seeds" if seed == result["seeds"][0] else None,
        )
    ax.errorbar(
        dims, result["acc_mean"], yerr=result["acc_std"], marker="o", capsize=3, label="mean"
    )
    ax.axhline(
        result["target_acc"], color="red", ls="--", label=f"90% of full ({result['full_acc']:.3f})"
    )
    if result["d_int90_interp"] is not None and math.isfinite(result["d_int90_interp"]):
        ax.axvline(result["d_int90_interp"], color="red", lw=0.6)
    ax.set_xscale("log")
    ax.set_xlabel("subspace dimension d")
    ax.set_ylabel("test accuracy")
    d_int = result["d_int90"]
    reached = d_int is not None and math.isfinite(d_int)
    ax.set_title(
        f"intrinsic dimension ({result['projection']}): "
        + (
            f"d_int90 = {d_int:g} (interpolated {result['d_int90_interp']:.3g})"
            if reached
            else "90% not reached"
        )
    )
    ax.legend()
    return fig
