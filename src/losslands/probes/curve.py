"""``probe=curve``: a quadratic Bézier curve of low loss between two trained models.

Garipov, Izmailov, Podoprikhin, Vetrov & Wilson (2018), "Loss Surfaces, Mode Connectivity, and
Fast Ensembling of DNNs": :func:`losslands.paths.bezier_curve` trains the control point of
``phi(t) = (1-t)^2 theta_a + 2t(1-t) c + t^2 theta_b`` between this job's weights and the model
named by ``probe.other`` on shuffled, unaugmented training mini-batches (BatchNorm in
batch-statistics mode), then evaluates the fixed train probe subset along ``t`` (BatchNorm
statistics recomputed at every point, as Garipov et al. do). Barrier: ``max_t L(phi(t)) -
max(L(theta_a), L(theta_b))``; ``linear_barrier`` is the same on the straight segment.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from matplotlib.figure import Figure

from losslands.paths import bezier_curve
from losslands.probes._pairs import PATHS_DEFINITION, PairConfig, path_problem
from losslands.probes.base import ProbeContext, ProbeInfo, Scalar


@dataclass
class Config(PairConfig):
    """Options of ``probe=curve`` (``conf/probe/curve.yaml`` documents each)."""

    name: str = "curve"
    steps: int = 1000
    lr: float = 0.02
    batch_size: int | None = None
    seed: int = 0
    n_eval: int = 61

    def check(self) -> None:
        super().check()
        self.at_least("steps", 1)
        self.at_least("n_eval", 2)
        self.positive("lr")
        if self.batch_size is not None:
            self.at_least("batch_size", 1)


INFO = ProbeInfo(
    title="Bézier curve",
    order=70,
    pairwise=True,
    scalars={
        "barrier": Scalar("max evaluation loss along the trained Bézier curve - max endpoint loss", "loss"),
        "linear_barrier": Scalar("the same on the straight segment", "loss"),
    },
    definition=PATHS_DEFINITION,
)


def run(ctx: ProbeContext, cfg: Config) -> dict[str, Any]:
    prob = path_problem(ctx, cfg)
    steps = cfg.steps
    res = prob.optimise(
        ctx,
        bezier_curve,
        steps,
        "bezier curve",
        steps=steps,
        lr=cfg.lr,
        seed=cfg.seed,
        n_eval=cfg.n_eval,
    )
    line = prob.straight_line(ctx, cfg.n_eval)
    a, b = prob.ends.theta_a, prob.ends.theta_b
    return {
        **prob.summary(res, line),
        "loss_a": float(res.losses[0]),
        "loss_b": float(res.losses[-1]),
        "t": res.t.tolist(),
        "losses": res.losses.tolist(),
        "linear_t": line["t"],
        "linear_losses": line["losses"],
        # distance of the trained control point from the midpoint, in units of ||b - a||
        "control_offset": float((res.control - 0.5 * (a + b)).norm() / (b - a).norm()),
        "train_history": res.history,
        "n_eval": prob.n_eval,
    }


def scalars(result: dict[str, Any]) -> dict[str, float]:
    return {k: float(result[k]) for k in ("barrier", "linear_barrier")}


def lines(result: dict[str, Any]) -> dict[str, tuple[str, dict[str, tuple[list, list]]]]:
    series = {
        "bezier": (result["t"], result["losses"]),
        "linear": (result["linear_t"], result["linear_losses"]),
    }
    return {"loss": ("t", series)}


def tables(result: dict[str, Any]) -> dict[str, tuple[list[str], list[list[float]]]]:
    rows = zip(result["t"], result["losses"], result["linear_losses"], strict=True)
    return {"curve": (["t", "curve_loss", "linear_loss"], [list(r) for r in rows])}


def plot(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(result["linear_t"], result["linear_losses"], "--", color="grey", label="straight line")
    ax.plot(result["t"], result["losses"], label="Bézier curve")
    ax.plot([0.0, 1.0], [result["loss_a"], result["loss_b"]], "o", color=ax.lines[-1].get_color())
    ax.set_xlabel("t")
    ax.set_ylabel("loss (train probe subset)")
    ax.set_title(
        f"Bézier curve {result['pair']}: barrier {result['barrier']:.3g} "
        f"(straight line {result['linear_barrier']:.3g})"
    )
    ax.legend()
    return fig
