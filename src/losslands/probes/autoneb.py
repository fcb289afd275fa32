"""``probe=autoneb``: a minimum-loss path between two trained models, found by AutoNEB.

Draxler, Veschgini, Salmhofer & Hamprecht (2018), "Essentially No Barriers in Neural Network
Energy Landscape": :func:`losslands.paths.autoneb` relaxes a chain of pivots between this job's
weights and the model named by ``probe.other`` with mini-batch NEB forces (shuffled, unaugmented
training batches, BatchNorm in batch-statistics mode), inserting pivots where the fixed
evaluation loss (the train probe subset, BatchNorm statistics recomputed at every point) rises
between neighbours. Barrier: ``max`` of the dense evaluation loss along the final path minus the
larger endpoint loss; ``linear_barrier`` is the same quantity on the straight segment, on the
same evaluation set. Pivot parameter vectors are not kept (only their path positions and losses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from matplotlib.figure import Figure

from losslands.paths import autoneb
from losslands.probes._pairs import PATHS_DEFINITION, PairConfig, path_problem
from losslands.probes.base import ProbeContext, ProbeInfo, Scalar


@dataclass
class Config(PairConfig):
    """Options of ``probe=autoneb`` (``conf/probe/autoneb.yaml`` documents each)."""

    name: str = "autoneb"
    batch_size: int | None = None
    seed: int = 0
    n_pivots_init: int = 3
    cycles: int = 6
    steps_per_cycle: int = 200
    insert_threshold: float = 0.02
    lr_schedule: list[float] | None = None
    momentum: float = 0.9
    spring: float = 1.0
    dense_points: int = 9
    max_pivots: int = 33
    linear_points: int = 61

    def check(self) -> None:
        super().check()
        for key, low in (("n_pivots_init", 2), ("cycles", 1), ("steps_per_cycle", 1),
                         ("dense_points", 1), ("linear_points", 2)):
            self.at_least(key, low)
        self.at_least("max_pivots", self.n_pivots_init)
        if self.batch_size is not None:
            self.at_least("batch_size", 1)
        self.positive("insert_threshold")
        self.positive("spring")
        if not 0.0 <= self.momentum < 1.0:
            raise ValueError(f"probe.momentum={self.momentum} must lie in [0, 1)")
        if self.lr_schedule is not None and len(self.lr_schedule) != self.cycles:
            raise ValueError(
                f"probe.lr_schedule has {len(self.lr_schedule)} rates: give one per cycle "
                f"(probe.cycles={self.cycles}) or null"
            )


INFO = ProbeInfo(
    title="AutoNEB",
    order=60,
    pairwise=True,
    scalars={
        "barrier": Scalar("max evaluation loss along the AutoNEB path - max endpoint loss", "loss"),
        "linear_barrier": Scalar("the same on the straight segment", "loss"),
        "saddle_t": Scalar("path position of the maximum (0..1)"),
        "n_pivots": Scalar("pivots of the final path"),
        "cycles": Scalar("NEB cycles run"),
    },
    definition=PATHS_DEFINITION,
)


def run(ctx: ProbeContext, cfg: Config) -> dict[str, Any]:
    prob = path_problem(ctx, cfg)
    ends = prob.ends
    cycles = cfg.cycles
    res = prob.optimise(
        ctx,
        autoneb,
        cycles,
        "autoneb cycles",
        n_pivots_init=cfg.n_pivots_init,
        cycles=cycles,
        steps_per_cycle=cfg.steps_per_cycle,
        insert_threshold=cfg.insert_threshold,
        lr_schedule=None if cfg.lr_schedule is None else [float(v) for v in cfg.lr_schedule],
        momentum=cfg.momentum,
        spring=cfg.spring,
        dense_points=cfg.dense_points,
        max_pivots=cfg.max_pivots,
    )
    line = prob.straight_line(ctx, cfg.linear_points)
    seg = (res.pivots[1:] - res.pivots[:-1]).norm(dim=1).double()
    offsets = torch.cat([seg.new_zeros(1), seg.cumsum(0)])
    return {
        **prob.summary(res, line),
        "n_pivots": len(res.pivots),
        "n_inserted": res.n_inserted,
        "cycles": res.cycles,
        "loss_a": float(res.pivot_losses[0]),
        "loss_b": float(res.pivot_losses[-1]),
        "dense_t": res.dense_t.tolist(),
        "dense_losses": res.dense_losses.tolist(),
        "pivot_t": (offsets / offsets[-1]).tolist(),
        "pivot_losses": res.pivot_losses.tolist(),
        "linear_t": line["t"],
        "linear_losses": line["losses"],
        "barrier_history": res.history,
        "insertions": [vars(i) for i in res.insertions],
        "insert_threshold_abs": res.threshold,
        "force_scale": res.force_scale,
        "curvature": res.curvature,
        # path length over the straight distance: how far the path bends away from the line
        "path_length_ratio": float(offsets[-1]) / float((ends.theta_b - ends.theta_a).norm()),
        "n_eval": prob.n_eval,
    }


def scalars(result: dict[str, Any]) -> dict[str, float]:
    keys = ("barrier", "linear_barrier", "saddle_t", "n_pivots", "cycles")
    return {k: float(result[k]) for k in keys}


def lines(result: dict[str, Any]) -> dict[str, tuple[str, dict[str, tuple[list, list]]]]:
    series = {
        "autoneb": (result["dense_t"], result["dense_losses"]),
        "linear": (result["linear_t"], result["linear_losses"]),
    }
    return {"loss": ("t", series)}


def tables(result: dict[str, Any]) -> dict[str, tuple[list[str], list[list[float]]]]:
    return {
        "path": (
            ["t", "loss"],
            [list(r) for r in zip(result["dense_t"], result["dense_losses"], strict=True)],
        ),
        "line": (
            ["t", "loss"],
            [list(r) for r in zip(result["linear_t"], result["linear_losses"], strict=True)],
        ),
    }


def plot(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    ax.plot(result["linear_t"], result["linear_losses"], "--", color="grey", label="straight line")
    ax.plot(result["dense_t"], result["dense_losses"], label="AutoNEB path")
    ax.plot(
        result["pivot_t"],
        result["pivot_losses"],
        "o",
        ms=4,
        color=ax.lines[-1].get_color(),
        label="pivots",
    )
    ax.axvline(result["saddle_t"], color="red", lw=0.6, label="saddle")
    ax.set_xlabel("normalised path position")
    ax.set_ylabel("loss (train probe subset)")
    ax.set_title(
        f"AutoNEB {result['pair']}: barrier {result['barrier']:.3g} "
        f"(straight line {result['linear_barrier']:.3g})"
    )
    ax.legend()
    return fig
