"""``probe=intrinsic_dim``: how many random directions training needs (Li et al. 2018).

Li, Farkhoor, Liu & Yosinski (2018), "Measuring the Intrinsic Dimension of Objective
Landscapes": train only ``z`` in ``theta = theta0 + P z``, ``P`` a fixed random ``D x d``
projection with unit-norm columns and ``theta0`` the job's own seeded initialisation; ``d_int90``
is the smallest ``d`` whose test accuracy reaches 90% of the full-space model's (this job's
trained checkpoint). The trained weights set only that target: with ``optimizer: adam`` the
subspace trainings of every optimizer's model at one seed are the same runs (the study's
Momentum and AdamW seed-0 pieces have identical checks), so d_int90 compares the optimizers'
accuracies through one landscape, not their solutions.

Affordable at honest budgets:

- **Search, not sweep** (``mode: search``): a geometric bracket from ``d_start`` (times
  ``growth``), then bisection in ``log d`` until ``d_int90 / d_below <= 1 + resolution``
  (:func:`losslands.subspace.search.search_dimension`); ``mode: sweep`` trains every ``dims``.
  With ``warm_start`` each later projection seed starts from the last two-sided bracket
  ``(d_below, d_int90]`` an earlier seed found (two trainings when the threshold still lies in
  it, three when it moved by one bracket, against four to five for a search from ``d_start``);
  ``per_seed[i].hint`` records it.
- **Early stopping**: every ``eval_every`` steps the accuracy on a held-out evaluation subset
  (the first ``eval_samples`` test images) is checked; once it passes the target, the full test
  split confirms it before the run stops (``target``); a run whose best evaluation accuracy has
  not improved by ``min_delta`` for ``patience`` checks while below the target stops
  (``plateau``); otherwise it trains the whole budget (``budget``: ``epochs`` passes, by
  default the full model's). Steps used are recorded.
- **One subspace optimizer for every model** (``optimizer: adam``, lr 1e-3, no weight decay):
  with plain SGD the subspace gradient is ``P^T g`` and the first-order decrease per step
  ``lr |P^T g|^2 ~ (d/D) lr |g|^2`` shrinks with ``d``, so d_int90 would measure SGD's speed in
  the subspace more than the landscape; Adam's per-coordinate steps do not shrink with ``d``.
  Li et al. (2018) likewise train every subspace with one standard optimizer. ``optimizer:
  job`` uses the job's own optimizer and hyper-parameters instead.
- **Error bars**: at least two projection seeds (``seeds``); ``d_int90`` is the mean ± std over
  the seeds that reached the target, with their count.
- **Reuse by what a piece depends on**: each finished ``(seed, d)`` training is stored under a
  hash of the initialisation and data (``ctx.init_key``: model, data, seed; not the trained
  weights), projection, ``d``, seed, budget, subspace optimizer and stopping rule
  (``ctx.store``, ``<cache>/pieces`` in the CLI), so extending or refining a search, changing
  an unrelated option, or another optimizer's job at the same seed reuses it wherever its
  record is determined for the new target (:func:`replay`).

BatchNorm runs on batch statistics while training; its statistics are recomputed on training
batches before each evaluation.

Over ~300 lines: the search, the stopping rule and the piece keys of one probe belong together.
"""

from __future__ import annotations

import hashlib
import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import torch
from matplotlib.figure import Figure

from losslands.evaluate import PointEvaluator, evaluate
from losslands.flat import batch_loss, get_flat
from losslands.probes.base import ProbeConfig, ProbeContext, ProbeInfo, Scalar
from losslands.subspace import make_projection, train_in_subspace
from losslands.subspace.search import search_dimension

PROJECTIONS = ("fastfood", "sparse", "dense")
MODES = ("search", "sweep")
OPTIMIZERS = ("adam", "job")
ADAM_LR = 1e-3


@dataclass
class Config(ProbeConfig):
    """Options of ``probe=intrinsic_dim`` (``conf/probe/intrinsic_dim.yaml`` documents each)."""

    name: str = "intrinsic_dim"
    mode: str = "search"
    d_start: int = 1000
    growth: float = 3.0
    resolution: float = 0.25
    warm_start: bool = True
    d_max: int | None = None
    dims: list[int] = field(default_factory=lambda: [10, 30, 100, 300, 1000, 3000, 10000])
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    projection: str = "fastfood"
    optimizer: str = "adam"
    lr: float | None = None
    epochs: int | None = None
    train_samples: int | None = None
    augment: bool | None = None
    eval_every: int | None = None
    eval_samples: int = 1000
    patience: int = 4
    min_delta: float = 0.005
    test_samples: int | None = None
    bn_batches: int = 50

    def check(self) -> None:
        self.one_of("mode", MODES)
        self.one_of("optimizer", OPTIMIZERS)
        self.one_of("projection", PROJECTIONS)
        if self.mode == "sweep" and (not self.dims or any(
                isinstance(d, bool) or not isinstance(d, int) or d < 1 for d in self.dims)):
            raise ValueError(f"probe.dims={list(self.dims)} must be a non-empty list of integers >= 1")
        if not self.seeds:
            raise ValueError("probe.seeds must name at least one projection seed")
        self.at_least("d_start", 1)
        if self.growth <= 1:
            raise ValueError(f"probe.growth={self.growth} must be > 1")
        self.positive("resolution")
        for key in ("d_max", "epochs", "train_samples", "test_samples", "eval_every"):
            if getattr(self, key) is not None:
                self.at_least(key, 1)
        if self.lr is not None:
            self.positive("lr")
        self.at_least("eval_samples", 1)
        self.at_least("patience", 1)
        self.at_least("bn_batches", 0)
        if self.min_delta < 0:
            raise ValueError(f"probe.min_delta={self.min_delta} must be >= 0")


INFO = ProbeInfo(
    title="Intrinsic dimension",
    order=45,
    scalars={
        "d_int90": Scalar("smallest d whose subspace-trained test accuracy reaches 90% of the full model's; mean over the projection seeds that reached it", "dimensions", null="not reached"),
        "d_int90_std": Scalar("std of d_int90 over those seeds", "dimensions", null="< 2 seeds reached"),
        "d_int90_interp": Scalar("d_int90 interpolated linearly in log d, mean over the seeds that reached it", "dimensions", null="not reached"),
        "reached_90": Scalar("fraction of projection seeds that reached the target"),
        "n_seeds": Scalar("projection seeds"),
        "d_max": Scalar("the largest d tried", "dimensions"),
        "full_acc": Scalar("the full-space model's test accuracy"),
        "trainings": Scalar("subspace trainings run (all seeds)"),
        "steps": Scalar("optimizer steps over all subspace trainings", "steps"),
        "acc_d<d>": Scalar("test accuracy after training in a d-dimensional subspace (mean over the seeds that tried d)"),
    },
    table=["d_int90", "d_int90_std", "d_int90_interp", "reached_90", "d_max", "full_acc"],
    table_prefixes=[],
    definition=(
        "**Intrinsic dimension** (`probe=intrinsic_dim`; Li et al. 2018): train θ0 + Pz over "
        "z ∈ R^d from the initialisation with one subspace optimizer for every model (Adam, lr "
        "1e-3, unless probe.optimizer=job); d_int90 = smallest d whose test accuracy reaches 90% "
        "of the full-space model's, found by a geometric bracket and bisection in log d to "
        "probe.resolution, with early stopping once the test accuracy (the first probe.test_samples "
        "test images, the same images as the target's) confirms the target (or the held-out "
        "accuracy plateaus below it); mean ± std over projection seeds that reached it; "
        "reached_90 = the fraction that did (else d_int90 > d_max). d_int90 is the upper end of "
        "the bracket (d_below, d_int90] each search ends in, at the budget probe.epochs: where "
        "the run at d_below used its whole budget still below the target, a longer budget could "
        "lower it. The subspace trainings never see the trained weights: at one seed every "
        "optimizer's model has the same initialisation, data order and subspace optimizer, so "
        "its trainings are the same runs (identical checks up to where each stops) and only the "
        "target differs; differences in d_int90 between optimizers reflect their accuracies, not "
        "their solutions."
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


def piece_key(ctx: ProbeContext, cfg: Config, d: int, seed: int, epochs: int, augment: bool) -> str:
    """Hash of everything one ``(seed, d)`` training depends on: the initialisation and data
    (``ctx.init_key``, not the trained weights), the subspace and the stopping rule; not the
    target, which :func:`replay` handles, nor the search settings."""
    spec = {
        # the job's own subspace optimizer (optimizer=job) differs between jobs at a seed
        "pieces": 2, "init": ctx.init_key if cfg.optimizer == "adam" and ctx.init_key else ctx.train_key,
        "device": ctx.device.type, "eval_batch": ctx.eval_batch_size,
        "projection": cfg.projection, "d": d, "seed": seed,
        "epochs": epochs, "train_samples": cfg.train_samples, "augment": augment,
        "optimizer": cfg.optimizer, "lr": cfg.lr, "eval_every": cfg.eval_every,
        "eval_samples": cfg.eval_samples, "patience": cfg.patience, "min_delta": cfg.min_delta,
        "test_samples": cfg.test_samples, "bn_batches": cfg.bn_batches, "batch": ctx.batch_size,
        "data_seed": ctx.seed,
    }
    return hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]


def replay(stored: dict[str, Any], target: float) -> dict[str, Any] | None:
    """The run record a training for ``target`` gives, read from a stored training of the same
    piece for ``stored["target"]``; None where that training stopped before it could tell.

    A training's checks do not depend on the target (only where it stops does), so another
    target's run is the stored one wherever it is determined: the held-out accuracy of every
    check is stored, the full split's where the held-out one passed the stored target. The new
    run is known if (a) it needs the full split only where that was evaluated and (b) it stops
    where the stored one did (its last check, whose metrics are the stored ones: a ``target`` or
    ``plateau`` stop at that check), or ends by ``plateau`` or ``budget`` as the stored one did
    without reaching ``target``. Exact, not approximate: Momentum's and AdamW's models at one
    seed (targets a few tenths of a point apart) share most trainings this way.
    """
    checks: list[list[float]] = []
    last = len(stored["checks"]) - 1
    base = {k: stored[k] for k in ("d", "seed", "test_acc", "test_loss", "train_loss", "steps", "budget")}
    for i, check in enumerate(stored["checks"]):
        checks.append([check[0], check[1]])
        if check[1] >= target:
            if len(check) < 3:
                return None  # the full split was not evaluated here
            checks[-1].append(check[2])
            if check[2] >= target:
                at_stop = i == last and stored["stop_reason"] in ("target", "plateau")
                return {**base, "stop_reason": "target", "checks": checks} if at_stop else None
    if stored["stop_reason"] == "target":
        return None  # the stored run stopped where this one goes on
    return {**base, "stop_reason": stored["stop_reason"], "checks": checks}


def run(ctx: ProbeContext, cfg: Config) -> dict[str, Any]:
    if ctx.make_model is None or (cfg.optimizer == "job" and ctx.make_optimizer is None):
        raise ValueError(
            "probe=intrinsic_dim trains from the model's initialisation: give the ProbeContext "
            "make_model (and make_optimizer for probe.optimizer=job)"
        )
    if cfg.epochs is None and ctx.epochs is None:
        raise ValueError("probe.epochs is null and the training epochs are unknown: set probe.epochs")
    test = ctx.split_batches("test", cfg.test_samples)
    full_acc = evaluate(ctx.model, test)["acc"]
    target = FRACTION * full_acc
    init = ctx.make_model().to(ctx.device).float()
    theta0 = get_flat(init)
    D = theta0.numel()
    d_max = D if cfg.d_max is None else min(cfg.d_max, D)
    if cfg.mode == "sweep" and max(cfg.dims) > D:
        raise ValueError(f"probe.dims must lie in 1..{D} (the parameter count), got {list(cfg.dims)}")
    if cfg.d_start > d_max:
        raise ValueError(f"probe.d_start={cfg.d_start} exceeds d_max={d_max} (the parameter count {D})")
    augment = ctx.augment if cfg.augment is None else cfg.augment
    epochs = ctx.epochs if cfg.epochs is None else cfg.epochs
    eval_set = ctx.split_batches("test", min(cfg.eval_samples, ctx.data.num_test))
    loss = batch_loss(init, ctx.loss_fn)
    evaluator = PointEvaluator(init, ctx.loss_fn, ctx.bn_batches(cfg.bn_batches))
    if cfg.optimizer == "adam":
        optimizer, lr = partial(torch.optim.Adam, lr=ADAM_LR), cfg.lr
    else:
        optimizer, lr = ctx.make_optimizer, cfg.lr

    def train_one(d: int, seed: int) -> dict[str, Any]:
        # every run starts from epoch 0 of the same data order: only d and the seed differ
        batches = ctx.train_batches(seed=ctx.seed, augment=augment, n=cfg.train_samples)
        steps = epochs * len(batches)
        every = cfg.eval_every or max(1, len(batches) // 2)
        P = make_projection(cfg.projection, D, d, seed=seed, device=theta0.device, dtype=theta0.dtype)
        state = {"best": -1.0, "stale": 0, "reason": "budget", "checks": [], "confirmed": None}

        def check(step: int, z: torch.Tensor, _: float) -> bool:
            if step == 0 or step % every:
                return False
            theta = theta0 + P(z)
            acc = evaluator.metrics(theta, eval_set)["acc"]
            state["checks"].append([step, acc])
            if acc >= target:
                full = evaluator.metrics(theta, test)
                state["checks"][-1].append(full["acc"])
                if full["acc"] >= target:
                    state["reason"], state["confirmed"] = "target", full
                    return True
            if acc > state["best"] + cfg.min_delta:
                state["best"], state["stale"] = acc, 0
            else:
                state["stale"] += 1
                if state["stale"] >= cfg.patience:
                    state["reason"] = "plateau"
                    return True
            return False

        with ctx.steps(steps, f"subspace d={d} seed={seed}") as bar:
            res = train_in_subspace(loss, theta0, d, projection=P, optimizer=optimizer, steps=steps,
                                    lr=lr, batches=batches, progress=bar, callback=check)
        metrics = state["confirmed"] or evaluator.metrics(res.theta, test)
        return {
            "d": d, "seed": seed, "test_acc": metrics["acc"], "test_loss": metrics["loss"],
            "train_loss": res.loss, "steps": res.steps, "budget": steps,
            "stop_reason": state["reason"], "checks": state["checks"],
        }

    def trained(d: int, seed: int) -> dict[str, Any]:
        key = piece_key(ctx, cfg, d, seed, epochs, augment)
        # kept across probe configs and jobs (ctx.store), else across a killed job's restarts
        store = ctx.store if ctx.store is not None else ctx.partial
        # a parallel job at the same seed waits for this piece, then replays it
        with store.lock(key):
            entry = store.get(key) or {"trainings": []}
            for stored in entry["trainings"]:
                run = replay(stored, target)
                if run is not None:
                    return run
            run = train_one(d, seed)
            store.put(key, {"trainings": [*entry["trainings"], {**run, "target": target}]})
            return run

    per_seed, runs = [], []
    hint: tuple[int, int] | None = None
    for seed in cfg.seeds:
        seed = int(seed)
        if cfg.mode == "search":
            found = search_dimension(lambda d, seed=seed: trained(d, seed)["test_acc"], target,
                                     d_start=cfg.d_start, d_max=d_max, growth=cfg.growth,
                                     resolution=cfg.resolution, hint=hint)
            dims = [d for d, _ in found.tried]
            entry = {"seed": seed, "d_int90": found.d_int, "d_below": found.d_below,
                     "d_int90_interp": found.d_interp, "resolved": found.resolved,
                     "hint": None if hint is None else list(hint)}
            if cfg.warm_start and found.d_below is not None and found.d_int is not None:
                hint = (found.d_below, found.d_int)
        else:
            accs = [trained(d, seed)["test_acc"] for d in sorted(cfg.dims)]
            dims = sorted(cfg.dims)
            d_int, d_interp = intrinsic_dimension(dims, accs, target)
            entry = {"seed": seed, "d_int90": None if math.isnan(d_int) else int(d_int),
                     "d_int90_interp": None if math.isnan(d_interp) else d_interp,
                     "d_below": None, "resolved": False, "hint": None}
        seed_runs = [trained(d, seed) for d in dims]
        entry["tried"] = [[r["d"], r["test_acc"]] for r in seed_runs]
        per_seed.append(entry)
        runs += seed_runs
    reached = [e for e in per_seed if e["d_int90"] is not None]
    values = [float(e["d_int90"]) for e in reached]
    interps = [float(e["d_int90_interp"]) for e in reached]
    tried_dims = sorted({r["d"] for r in runs})
    acc_by_d = {d: statistics.fmean(r["test_acc"] for r in runs if r["d"] == d) for d in tried_dims}
    return {
        "mode": cfg.mode,
        "seeds": [int(s) for s in cfg.seeds],
        "n_seeds": len(per_seed),
        "per_seed": per_seed,
        "runs": runs,
        "dims": tried_dims,
        "acc_mean": [acc_by_d[d] for d in tried_dims],
        "full_acc": full_acc,
        "target_acc": target,
        "d_int90": statistics.fmean(values) if values else None,
        "d_int90_std": statistics.stdev(values) if len(values) > 1 else None,
        "d_int90_interp": statistics.fmean(interps) if interps else None,
        "n_reached": len(reached),
        "num_params": D,
        "d_max": d_max,
        "projection": cfg.projection,
        "optimizer": cfg.optimizer,
        "epochs": epochs,
        "augment": augment,
        "trainings": len(runs),
        "steps": sum(r["steps"] for r in runs),
    }


@dataclass(frozen=True)
class Bracket:
    """One projection seed's search, read as bounds on its d_int90.

    Attributes:
        seed: the projection seed.
        d_int90: the smallest ``d`` that reached the target (None: none did).
        d_below: the largest ``d`` below ``d_int90`` (or, with no ``d_int90``, the largest ``d``)
            tried that did not: the crossing lies in ``(d_below, d_int90]``. None: none tried.
        budget_bound: the run at ``d_below`` trained its whole budget still below the target and
            not plateaued, so a longer budget might reach the target there: ``d_below`` then
            bounds nothing beyond this budget, and ``d_int90`` bounds the crossing at a longer
            budget only from above (a longer run passes through the same checks first).
    """

    seed: int
    d_int90: int | None
    d_below: int | None
    budget_bound: bool


def brackets(result: dict[str, Any]) -> list[Bracket]:
    """Each projection seed's bracket ``(d_below, d_int90]`` from a result's runs."""
    out = []
    for e in result.get("per_seed") or []:
        seed, d_int = int(e["seed"]), e.get("d_int90")
        failed = [r for r in result.get("runs") or [] if int(r["seed"]) == seed
                  and r["test_acc"] < result["target_acc"] and (d_int is None or r["d"] < d_int)]
        below = max(failed, key=lambda r: r["d"], default=None)
        out.append(Bracket(seed, None if d_int is None else int(d_int),
                           None if below is None else int(below["d"]),
                           below is not None and below.get("stop_reason") == "budget"))
    return out


def scalars(result: dict[str, Any]) -> dict[str, float]:
    def num(v: Any) -> float:
        return math.nan if v is None else float(v)

    out = {k: num(result[k]) for k in ("d_int90", "d_int90_std", "d_int90_interp", "full_acc")}
    # a seed that never reached 90% has no d_int90: the count says how many did
    out["reached_90"] = result["n_reached"] / result["n_seeds"]
    out["n_seeds"] = float(result["n_seeds"])
    out["d_max"] = float(max(result["dims"]))
    out["trainings"] = float(result["trainings"])
    out["steps"] = float(result["steps"])
    for d, a in zip(result["dims"], result["acc_mean"], strict=True):
        out[f"acc_d{d}"] = float(a)
    return out


def lines(result: dict[str, Any]) -> dict[str, tuple[str, dict[str, tuple[list, list]]]]:
    acc = {}
    for e in result["per_seed"]:
        pts = sorted(e["tried"])
        acc[f"seed {e['seed']}"] = ([d for d, _ in pts], [a for _, a in pts])
    return {"test_acc": ("d", acc)}


def tables(result: dict[str, Any]) -> dict[str, tuple[list[str], list[list[float]]]]:
    cols = ["d", "seed", "test_acc", "test_loss", "train_loss", "steps", "budget", "stop_reason"]
    return {"runs": (cols, [[r[c] for c in cols] for r in result["runs"]])}


def plot(result: dict[str, Any]) -> Figure:
    fig = Figure(figsize=(7, 4.5), layout="constrained")
    ax = fig.subplots()
    for e in result["per_seed"]:
        pts = sorted(e["tried"])
        (line,) = ax.plot([d for d, _ in pts], [a for _, a in pts], "o-", ms=4,
                          label=f"seed {e['seed']} ({len(pts)} trainings)")
        if e["d_int90"] is not None:
            ax.axvline(e["d_int90"], color=line.get_color(), lw=0.8, ls="--")
    ax.axhline(result["target_acc"], color="red", ls=":",
               label=f"90% of full ({result['full_acc']:.3f})")
    ax.set_xscale("log")
    ax.set(xlabel="subspace dimension d", ylabel="test accuracy")
    d = result["d_int90"]
    ax.set_title(
        f"intrinsic dimension ({result['projection']}, {result['optimizer']}): "
        + (f"d_int90 = {d:.4g} ± {result['d_int90_std'] or 0:.2g} "
           f"({result['n_reached']}/{result['n_seeds']} seeds)" if d is not None
           else "90% not reached")
    )
    ax.legend(fontsize=8)
    return fig
