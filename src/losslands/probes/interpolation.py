"""``probe=interpolation``: loss and accuracy on the straight line between two trained models.

``theta(alpha) = (1 - alpha) theta_a + alpha theta_b`` with ``theta_a`` this job's weights and
``theta_b`` those of the model named by ``probe.other`` (by default the next optimizer of the
reference study's cycle SGD -> Momentum -> AdamW -> SGD), for ``alpha`` on a grid over
``[lo, hi]`` containing 0 and 1 (Goodfellow, Vinyals & Saxe 2015, "Qualitatively characterizing
neural network optimization problems", extrapolate the same way). Measured on the fixed train
probe subset and on the test split; BatchNorm statistics are recomputed at every ``alpha``.

Barrier (Entezari, Sedghi, Saukh & Neyshabur 2022, "The Role of Permutation Invariance in Linear
Mode Connectivity of Neural Networks"): ``max_{alpha in [0,1]} L(theta(alpha)) - ((1 - alpha)
L(theta_a) + alpha L(theta_b))`` over the grid; the accuracy barrier is the same with the
accuracy's sign flipped (the largest drop below the endpoints' interpolated accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.figure import Figure

from losslands.evaluate import PointEvaluator
from losslands.paths import default_alphas, entezari_barrier, linear_interpolation
from losslands.probes._pairs import PATHS_DEFINITION, PairConfig, load_endpoints
from losslands.probes.base import ProbeContext, ProbeInfo, Scalar

SETS = ("train", "test")


@dataclass
class Config(PairConfig):
    """Options of ``probe=interpolation`` (``conf/probe/interpolation.yaml`` documents each)."""

    name: str = "interpolation"
    n_points: int = 61
    lo: float = -1.0
    hi: float = 2.0
    test_samples: int | None = None

    def check(self) -> None:
        super().check()
        self.at_least("n_points", 2)
        if self.test_samples is not None:
            self.at_least("test_samples", 1)


INFO = ProbeInfo(
    title="Linear interpolation",
    order=50,
    pairwise=True,
    scalars={
        "barrier": Scalar("Entezari barrier of the train-subset loss on alpha in [0, 1]", "loss"),
        "barrier_alpha": Scalar("alpha where the train barrier is attained"),
        "test_barrier": Scalar("Entezari barrier of the test loss", "loss"),
        "acc_barrier": Scalar("largest drop of train accuracy below the chord"),
        "test_acc_barrier": Scalar("largest drop of test accuracy below the chord"),
        "loss_a": Scalar("train-subset loss at this job's weights (alpha=0)", "loss"),
        "loss_b": Scalar("train-subset loss at the partner's weights (alpha=1)", "loss"),
    },
    definition=PATHS_DEFINITION,
)


def run(ctx: ProbeContext, cfg: Config) -> dict[str, Any]:
    ends = load_endpoints(ctx, cfg.other, cfg.pairs)
    bn = ctx.bn_batches(cfg.bn_batches)
    evaluator = PointEvaluator(ctx.model, ctx.loss_fn, bn, shard=ctx.shard)
    data = {
        "train": ctx.probe_batches(cfg.n_samples),
        "test": ctx.split_batches("test", cfg.test_samples),
    }
    alphas = default_alphas(cfg.n_points, cfg.lo, cfg.hi)
    # The core calls loss(theta) then eval_fn(theta) at each alpha: the first call measures
    # everything at that point (one BatchNorm recomputation), the second hands the rest over.
    point: dict[str, float] = {}

    def train_loss(theta: torch.Tensor) -> float:
        point.clear()
        for name, batches in data.items():
            for key, value in evaluator.metrics(theta, batches).items():
                point[f"{name}_{key}"] = value
        return point["train_loss"]

    with ctx.steps(len(alphas), "interpolation") as bar:
        res = linear_interpolation(
            train_loss,
            ends.theta_a,
            ends.theta_b,
            alphas=alphas,
            eval_fn=lambda theta: {k: v for k, v in point.items() if k != "train_loss"},
            progress=bar,
        )
    curves = {"train_loss": res.losses, **res.metrics}
    out: dict[str, Any] = {
        "other": ends.name_b,
        "pair": ends.pair,
        "alphas": res.alphas.tolist(),
        **{k: v.tolist() for k, v in curves.items()},
        "n_train": sum(len(x) for x, _ in data["train"]),
        "n_test": sum(len(x) for x, _ in data["test"]),
        "bn_recomputed": bn is not None,
    }
    for name in SETS:
        loss, acc = curves[f"{name}_loss"], curves[f"{name}_acc"]
        prefix = "" if name == "train" else "test_"
        out[f"{prefix}barrier"], out[f"{prefix}barrier_alpha"] = entezari_barrier(res.alphas, loss)
        drop, drop_alpha = entezari_barrier(res.alphas, -acc)
        out[f"{prefix}acc_barrier"], out[f"{prefix}acc_barrier_alpha"] = drop, drop_alpha
        for end, alpha in (("a", 0.0), ("b", 1.0)):
            at = res.alphas == alpha
            out[f"{prefix}loss_{end}"] = float(loss[at][0])
            out[f"{prefix}acc_{end}"] = float(acc[at][0])
    return out


def scalars(result: dict[str, Any]) -> dict[str, float]:
    keys = (
        "barrier",
        "barrier_alpha",
        "test_barrier",
        "acc_barrier",
        "test_acc_barrier",
        "loss_a",
        "loss_b",
    )
    return {k: float(result[k]) for k in keys}


def lines(result: dict[str, Any]) -> dict[str, tuple[str, dict[str, tuple[list, list]]]]:
    alphas = result["alphas"]
    return {
        metric: ("alpha", {split: (alphas, result[f"{split}_{metric}"]) for split in ("train", "test")})
        for metric in ("loss", "acc")
    }


def tables(result: dict[str, Any]) -> dict[str, tuple[list[str], list[list[float]]]]:
    cols = ["alpha", "train_loss", "train_acc", "test_loss", "test_acc"]
    rows = [
        list(r) for r in zip(*(result[c if c != "alpha" else "alphas"] for c in cols), strict=True)
    ]
    return {"curve": (cols, rows)}


def plot(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(10, 4), layout="constrained")
    alphas = result["alphas"]
    a, b = result["pair"].split("-", 1)
    for ax, metric, label in zip(
        fig.subplots(1, 2), ("loss", "acc"), ("loss", "accuracy"), strict=True
    ):
        for name, style in (("train", "-"), ("test", "--")):
            values = result[f"{name}_{metric}"]
            ax.plot(
                alphas, values, style, label=f"{name} {'subset' if name == 'train' else 'split'}"
            )
            ends = [values[alphas.index(0.0)], values[alphas.index(1.0)]]
            ax.plot([0.0, 1.0], ends, "o", color=ax.lines[-1].get_color())
        for x, name in ((0.0, a), (1.0, b)):
            ax.axvline(x, color="grey", lw=0.6)
            ax.annotate(
                name, (x, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom"
            )
        ax.set_xlabel("alpha")
        ax.set_ylabel(label)
        ax.legend()
    fig.suptitle(
        f"linear interpolation {result['pair']}: barrier {result['barrier']:.3g} (train subset), "
        f"{result['test_barrier']:.3g} (test)"
    )
    return fig
