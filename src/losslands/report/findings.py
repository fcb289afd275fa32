"""The report's opening section: the reference study's claims, each checked against the sweep.

Every claim gets a verdict from the per-seed numbers, the numbers themselves (mean ± std and the
count of seeds) and, where the data do not settle it, what would. The rules are fixed here so
that a verdict means the same in every report:

- **A difference** between two optimizers counts when it exceeds twice its standard error,
  ``|m1 - m2| > 2 sqrt(s1²/n1 + s2²/n2)`` (about a 95% interval). With a few seeds a t-interval
  is wider: a difference that counts but lies within the two-sided 95% t-interval with
  ``min(n1, n2) - 1`` degrees of freedom (conservative for Welch's) is marked *marginal*, and more
  seeds are listed as what would settle it. Otherwise it is unresolved, and the seeds that would
  resolve a difference of the observed size are ``n (2 se / |d|)²``.
- **A contradicted claim** is settled by any firm (not marginal) contradiction of one of its
  parts; when every contradiction is marginal, more seeds for those are what would settle it.
- **A sign** (a negative lambda_min) counts when the mean is beyond 2 standard errors of zero
  and every seed agrees.
- **Connected** (a barrier of nothing): mean barrier + 2 s.e. below :data:`CONNECTED_BARRIER`.
- **A large barrier** is judged against the cross-seed baseline, the straight-line barrier
  between two seeds of one optimizer (different initialisations, nothing shared but the
  optimizer): a pair's barrier is large when it exceeds :data:`LARGE_BARRIER_FRACTION` of the
  smaller baseline of its two optimizers by 2 s.e., and not large when it falls short of it by
  2 s.e. (which needs both baselines: a missing one could be the smaller). A baseline counts from
  2 seed pairs. AutoNEB's baseline is shown beside its pairs; claim 6 asks for connection only.
- **Sizeable fraction** (intrinsic dimension): at least :data:`SIZEABLE_FRACTION` of the
  parameters, beyond 2 standard errors. A model's d_int90 is itself a mean over projection seeds,
  so the standard error is the larger of the one across trained models and the one across every
  (model, projection seed) search that reached the target. A model whose search never reached
  the target counts at the largest d tried (its d_int90 lies above): such a lower bound can
  support the claim by the same rule but not contradict it.

Claims are those of earlier analyses of the reference setup (the study issue lists them).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from losslands.report import tables
from losslands.report.load import Job, probe_records, trainings
from losslands.report.tables import epochs_to_fraction, scalar_value
from losslands.stats import mean_std

#: Barrier (nats of train loss) below which two solutions count as connected.
CONNECTED_BARRIER = 0.05
#: Fraction of the cross-seed baseline from which a barrier counts as large: half the barrier
#: between solutions that share nothing but the optimizer.
LARGE_BARRIER_FRACTION = 0.5
#: Fraction of the parameter count from which an intrinsic dimension counts as sizeable.
SIZEABLE_FRACTION = 0.1
OPTIMIZERS = ("sgd", "momentum", "adamw")

Values = dict[str, dict[int, float]]  # {optimizer: {seed: value}}


def _finite(values: Sequence[float | None]) -> list[float]:
    return [float(v) for v in values if v is not None and math.isfinite(v)]


def _stats(values: Sequence[float | None]) -> tuple[float, float, int]:
    """Mean, standard error and count of the finite values."""
    v = _finite(values)
    if not v:
        return math.nan, math.nan, 0
    m, sd, n = mean_std(v)
    return m, (sd / math.sqrt(n) if n > 1 else math.nan), n


def _cell(values: Sequence[float | None]) -> str:
    """``mean ± std (n=k)`` of the finite values (the report's table format)."""
    return tables.fmt(*tables.mean_std(values))


def _difference(a: Sequence[float | None], b: Sequence[float | None]) -> tuple[float, float, int]:
    """``(a - b, its standard error, the fewer seeds)``; NaN where either side has < 2 seeds."""
    ma, sa, na = _stats(a)
    mb, sb, nb = _stats(b)
    return ma - mb, math.hypot(sa, sb), min(na, nb)


# starts each "what would settle it" item that a marginal difference adds
_MORE_SEEDS = "more seeds: "

# two-sided 95% quantiles of Student's t, t_{0.975}(df), df = 1..10
_T975 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228)


def _marginal(d: float, se: float, n: int) -> str:
    """A note when ``|d| > 2 se`` falls inside the t-interval with ``n - 1`` df, else ''."""
    df = n - 1
    if df < 1 or df > len(_T975) or abs(d) >= _T975[df - 1] * se:
        return ""
    # no "|" here: the text goes into a Markdown table cell
    return f"marginal: {abs(d) / se:.2g} s.e., below t = {_T975[df - 1]:.3g} ({df} df)"


def _seeds_needed(d: float, se: float, n: int) -> int | None:
    if not (math.isfinite(d) and math.isfinite(se)) or d == 0 or n < 2:
        return None
    return max(n + 1, math.ceil(n * (2 * se / abs(d)) ** 2 - 1e-9))  # no float noise above an integer


def _order(values: Values, label: str, larger: bool, metric: str = "",
           show_values: bool = True) -> tuple[str, str, list[str]]:
    """Is ``label`` the largest (``larger``) or smallest of the optimizers, beyond 2 s.e.?

    Returns ``(verdict, evidence, what would settle it)``; the evidence lists every optimizer's
    values (unless ``show_values`` is false) and, when contradicted, the deciding comparisons.
    """
    if label not in values or len(values) < 2:
        missing = [o for o in OPTIMIZERS if o not in values] or [label]
        return "no data", "", [f"run every optimizer with >= 2 seeds ({', '.join(missing)} missing)"]
    sign = 1 if larger else -1
    parts: list[tuple[str, list[str]]] = []  # (verdict, what would settle it) per comparison
    against = []
    what = f"{metric}, " if metric else ""
    for other in values:
        if other == label:
            continue
        d, se, n = _difference(list(values[label].values()), list(values[other].values()))
        if not math.isfinite(se):
            parts.append(("not resolved", [f"{what}{label} vs {other}: >= 2 seeds each"]))
        elif abs(d) > 2 * se:
            note = _marginal(d, se, n)
            parts.append(("supported" if sign * d > 0 else "contradicted",
                          [f"{_MORE_SEEDS}{what}{label} vs {other} is {note}"] if note else []))
            if sign * d < 0:
                against.append(f"{what}{label} vs {other}: difference {d:+.3g} ± {se:.2g} (s.e.), "
                               f"against the claim{', ' + note if note else ''}")
        else:
            need = _seeds_needed(d, se, n)
            parts.append(("not resolved", [f"{what}{label} vs {other}: difference {d:+.3g} ± {se:.2g} (s.e.)"
                                           + (f", ~{need} seeds each to resolve a difference this size" if need else "")]))
    evidence = ("; ".join(f"{o} {_cell(list(v.values()))}" for o, v in values.items())
                if show_values else "")
    verdict, settle = _merge(*parts)
    if against:  # the comparisons that decide it, so a reader need not redo the arithmetic
        evidence = f"{evidence} ({'; '.join(against)})".lstrip()
    return verdict, evidence, settle


def _per_seed(jobs: list[Job], probe: str, key: str) -> Values:
    out: Values = defaultdict(dict)
    for rec in probe_records(jobs, probe):
        if probe in _PAIRWISE and is_cross_seed(rec):
            continue
        value = scalar_value(rec.get("scalars") or {}, key)
        if value is not None:
            out[rec.get("optimizer", "?")][int(rec.get("seed", 0))] = value
    return dict(out)


_PAIRWISE = ("interpolation", "autoneb", "curve")


def is_cross_seed(rec: dict[str, Any]) -> bool:
    """Whether a pairwise probe's record pairs two seeds of one optimizer."""
    other = (rec.get("result") or {}).get("other")
    return other == rec.get("optimizer")


def _pairs(jobs: list[Job], probe: str, key: str = "barrier") -> dict[str, list[float]]:
    """``{pair label: [values over seeds]}``, the label ``a-b`` (cross-seed: ``a-a``)."""
    out: dict[str, list[float]] = defaultdict(list)
    for rec in probe_records(jobs, probe):
        other = (rec.get("result") or {}).get("other")
        value = scalar_value(rec.get("scalars") or {}, key)
        if other and value is not None:
            out["-".join(sorted((rec.get("optimizer", "?"), other), key=_rank))].append(value)
    return dict(out)


def _rank(name: str) -> int:
    return OPTIMIZERS.index(name) if name in OPTIMIZERS else len(OPTIMIZERS)


def _training(jobs: list[Job]) -> tuple[Values, Values]:
    acc: Values = defaultdict(dict)
    epochs: Values = defaultdict(dict)
    for s in trainings(jobs):
        if s.get("status", "completed") != "completed":
            continue
        opt, seed = s["config"]["optimizer"]["name"], int(s["config"]["seed"])
        a = scalar_value(s.get("final") or {}, "val/acc")
        e = epochs_to_fraction(s.get("history") or [])
        if a is not None:
            acc[opt][seed] = a
        if e is not None:
            epochs[opt][seed] = e
    return dict(acc), dict(epochs)


def _merge(*parts: tuple[str, list[str]]) -> tuple[str, list[str]]:
    """One verdict and "what would settle it" from a claim's parts ``(verdict, settle)``.

    A contradicted claim is settled by any firm contradiction; if every contradicting part is
    marginal, only those parts' "more seeds" notes remain (the other parts' cannot undo it).
    """
    verdict = _combine(*(v for v, _ in parts))
    if verdict != "contradicted":
        return verdict, [x for _, settle in parts for x in settle]
    against = [[x for x in settle if x.startswith(_MORE_SEEDS)] for v, settle in parts if v == "contradicted"]
    return verdict, ([] if any(not a for a in against) else [x for a in against for x in a])


def _combine(*verdicts: str) -> str:
    if "contradicted" in verdicts:
        return "contradicted"
    if all(v == "supported" for v in verdicts):
        return "supported"
    if all(v == "no data" for v in verdicts):
        return "no data"
    return "not resolved"


def claim_accuracy(jobs: list[Job]) -> tuple[str, str, list[str]]:
    acc, epochs = _training(jobs)
    v1, e1, s1 = _order(acc, "adamw", larger=True, metric="val acc")
    v2, e2, s2 = _order(epochs, "adamw", larger=False, metric="epochs")
    evidence = ". ".join(x for x in (e1 and f"final val acc: {e1}", e2 and f"Epochs to 90% of the final val acc: {e2}") if x)
    verdict, settle = _merge((v1, s1), (v2, s2))
    return verdict, evidence, settle


def claim_sharpness(jobs: list[Job]) -> tuple[str, str, list[str]]:
    lam = _per_seed(jobs, "lanczos", "lambda_max")
    v1, e1, s1 = _order(lam, "adamw", larger=True, metric="lambda_max", show_values=False)
    v2, e2, s2 = _order(lam, "momentum", larger=False, metric="lambda_max", show_values=False)
    values = "; ".join(f"{o} {_cell(list(v.values()))}" for o, v in lam.items())
    verdict, settle = _merge((v1, s1), (v2, s2))
    return verdict, " ".join(x for x in (values and f"lambda_max: {values}", e1, e2) if x), settle


def claim_indefinite(jobs: list[Job]) -> tuple[str, str, list[str]]:
    low = _per_seed(jobs, "lanczos", "lambda_min")
    ratio = _per_seed(jobs, "lanczos", "abs_min_over_max")
    if not low:
        return "no data", "", ["run probe=lanczos"]
    verdicts, settle = [], []
    for opt in sorted(low, key=_rank):
        m, se, n = _stats(list(low[opt].values()))
        every = all(v < 0 for v in low[opt].values())
        if n >= 2 and every and m + 2 * se < 0:
            verdicts.append("supported")
        elif n >= 2 and all(v >= 0 for v in low[opt].values()):
            verdicts.append("contradicted")
        else:
            verdicts.append("not resolved")
            settle.append(f"{opt}: certified lambda_min on >= 2 seeds of one sign")
    missing = [o for o in OPTIMIZERS if o not in low]
    if missing:
        verdicts.append("not resolved")
        settle.append(f"lambda_min of {', '.join(missing)}")
    evidence = "; ".join(f"{o} lambda_min {_cell(list(low[o].values()))}, abs(lambda_min)/lambda_max "
                         f"{_cell(list(ratio.get(o, {}).values()))}" for o in sorted(low, key=_rank))
    return _combine(*verdicts), evidence, settle


def claim_noise(jobs: list[Job]) -> tuple[str, str, list[str]]:
    ratio = _per_seed(jobs, "noise", "ratio")
    v1, e1, s1 = _order(ratio, "adamw", larger=False, metric="lambda_C/lambda_H")
    acc, _ = _training(jobs)
    lam = _per_seed(jobs, "lanczos", "lambda_max")
    r_ratio, n1 = _correlation(ratio, acc)
    r_lam, n2 = _correlation(lam, acc)
    if n1 < 4 or n2 < 4:
        v2, e2 = "no data", "too few models with both numbers to correlate"
        s2 = ["noise ratio, lambda_max and val acc on >= 4 models"]
    else:
        # Fisher z of the difference between the two correlations' magnitudes (dependent
        # correlations are treated as independent here: a conservative-enough screen at n = 9)
        se = math.sqrt(1 / (n1 - 3) + 1 / (n2 - 3))
        z = (math.atanh(min(abs(r_ratio), 0.999)) - math.atanh(min(abs(r_lam), 0.999))) / se
        v2 = "supported" if z > 2 else "contradicted" if z < -2 else "not resolved"
        e2 = (f"Pearson r with val acc over {n1} models: ratio {r_ratio:+.2f}, lambda_max "
              f"{r_lam:+.2f} (difference of |r| in Fisher z: {z:+.2f})")
        s2 = [] if v2 != "not resolved" else ["many more models (seeds, optimizers, learning rates) to "
                                              "separate the two correlations"]
    verdict, settle = _merge((v1, s1), (v2, s2))
    return verdict, ". ".join(x for x in (e1 and f"lambda_C/lambda_H: {e1}", e2) if x), settle


def _correlation(x: Values, y: Values) -> tuple[float, int]:
    pairs = [(x[o][s], y[o][s]) for o in x if o in y for s in x[o] if s in y[o]]
    pairs = [(a, b) for a, b in pairs if math.isfinite(a) and math.isfinite(b)]
    n = len(pairs)
    if n < 3:
        return math.nan, n
    mx, my = sum(a for a, _ in pairs) / n, sum(b for _, b in pairs) / n
    sxy = sum((a - mx) * (b - my) for a, b in pairs)
    sxx = sum((a - mx) ** 2 for a, _ in pairs)
    syy = sum((b - my) ** 2 for _, b in pairs)
    return (sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan), n


def _connected(values: Sequence[float]) -> str:
    m, se, n = _stats(values)
    if n < 2:
        return "not resolved"
    if m + 2 * se < CONNECTED_BARRIER:
        return "connected"
    if m - 2 * se > CONNECTED_BARRIER:
        return "separated"
    return "not resolved"


# The seed fixes the initialisation (and the data order), so an optimizer pair at one seed starts
# from one point, while the cross-seed baseline's two solutions start from different points.
_CROSS = ("Cross-seed baseline (same optimizer, different seeds, so different initialisations; the "
          "optimizer pairs share theirs)")


def _large(pair: str, values: Sequence[float], cross: dict[str, list[float]]) -> tuple[str, str, list[str]]:
    """Is ``pair``'s barrier large against the cross-seed baselines of its two optimizers?

    Large means above :data:`LARGE_BARRIER_FRACTION` of the smaller baseline. Clearing one
    baseline's bar clears the smaller one's, so "large" is judged against the smallest baseline
    with >= 2 seed pairs; "not large" needs both baselines, since a missing one could be smaller.
    Returns ``(verdict, evidence, what would settle it)``.
    """
    own = [f"{o}-{o}" for o in dict.fromkeys(pair.split("-"))]
    known = [b for b in own if _stats(cross.get(b, []))[2] >= 2]
    missing = [f"{b} (n={_stats(cross.get(b, []))[2]})" for b in own if b not in known]
    wanted = f"{pair}: the cross-seed baseline {' and '.join(missing)} on >= 2 seed pairs, to judge its size against"
    m, se, n = _stats(values)
    if not known or n < 2:  # a pair on one seed is already listed by the comparison with sgd-momentum
        return "not resolved", "", [wanted] if not known else []
    base = min(known, key=lambda b: _stats(cross[b])[0])
    mb, sb, nb = _stats(cross[base])
    f = LARGE_BARRIER_FRACTION
    d, s = m - f * mb, math.hypot(se, f * sb)
    text = f"{pair} barrier minus {f:g} x {base} baseline: {d:+.3g} ± {s:.2g} (s.e.)"
    note = _marginal(d, s, min(n, nb))
    marked, more = (f", {note}", [f"{_MORE_SEEDS}{text} is {note}"]) if note else ("", [])
    if d > 2 * s:
        return "supported", f"{text}, large{marked}", more
    if d < -2 * s and not missing:
        return "contradicted", f"{text}, not large{marked}", more
    if d < -2 * s:  # below this baseline, but the missing one could be smaller
        return "not resolved", f"{text}, not resolved", [wanted]
    need = _seeds_needed(d, s, min(n, nb))
    return "not resolved", f"{text}, not resolved", [
        text + (f", ~{need} seeds each to resolve a difference this size" if need else "")]


def claim_linear(jobs: list[Job]) -> tuple[str, str, list[str]]:
    pairs = _pairs(jobs, "interpolation")
    same = {p: v for p, v in pairs.items() if len(set(p.split("-"))) == 2}
    cross = {p: v for p, v in pairs.items() if len(set(p.split("-"))) == 1}
    if "sgd-momentum" not in same or not any("adamw" in p for p in same):
        return "no data", "", ["probe=interpolation for sgd-momentum and the AdamW pairs"]
    parts: list[tuple[str, list[str]]] = []  # (verdict, what would settle it) per part of the claim
    sizes = []
    sm = _connected(same["sgd-momentum"])
    parts.append(({"connected": "supported", "separated": "contradicted"}.get(sm, "not resolved"), []))
    for p in (p for p in same if "adamw" in p):
        d, se, n = _difference(same[p], same["sgd-momentum"])
        if math.isfinite(se) and d > 2 * se and _connected(same[p]) == "separated":
            note = _marginal(d, se, n)
            parts.append(("supported", [f"{_MORE_SEEDS}{p} vs sgd-momentum barrier is {note}"] if note else []))
        elif math.isfinite(se) and d < 2 * se and _connected(same[p]) == "connected":
            parts.append(("contradicted", []))
        else:
            parts.append(("not resolved", [f"{p} vs sgd-momentum barrier: {d:+.3g} ± {se:.2g}" if math.isfinite(se)
                                           else f"{p} and sgd-momentum: >= 2 seeds each"]))
        # "large": against the barrier between solutions that share only the optimizer
        v, text, s = _large(p, same[p], cross)
        parts.append((v, s))
        if text:
            sizes.append(text)
    evidence = "; ".join(f"{p} barrier {_cell(v)}" for p, v in sorted(same.items()))
    evidence += f" (connected: barrier + 2 s.e. < {CONNECTED_BARRIER})"
    if cross:
        evidence += f". {_CROSS}: " + "; ".join(
            f"{p} {_cell(v)}" for p, v in sorted(cross.items()))
    if sizes:
        evidence += (f". Size (large: above {LARGE_BARRIER_FRACTION:g} x the smaller baseline of the "
                     "pair's optimizers by 2 s.e.): " + "; ".join(sizes))
    verdict, settle = _merge(*parts)
    return verdict, evidence, settle


def claim_curved(jobs: list[Job]) -> tuple[str, str, list[str]]:
    pairs = {p: v for p, v in _pairs(jobs, "autoneb").items() if len(set(p.split("-"))) == 2}
    linear = {p: v for p, v in _pairs(jobs, "autoneb", "linear_barrier").items() if len(set(p.split("-"))) == 2}
    if not pairs:
        return "no data", "", ["probe=autoneb on every optimizer pair"]
    verdicts = [{"connected": "supported", "separated": "contradicted"}.get(_connected(v), "not resolved")
                for v in pairs.values()]
    if len(pairs) < 3:
        verdicts.append("not resolved")
    # not claim 5's number: that is Entezari's barrier above the chord, this one is the height
    # above the higher endpoint, which a straight line with a monotone loss keeps at 0
    evidence = "; ".join(f"{p}: AutoNEB barrier {_cell(v)} (straight line {_cell(linear.get(p, []))})"
                         for p, v in sorted(pairs.items()))
    evidence += " (barrier here: max loss along the path minus the larger endpoint loss)"
    cross = {p: v for p, v in _pairs(jobs, "autoneb").items() if len(set(p.split("-"))) == 1}
    if cross:
        evidence += f". {_CROSS}: " + "; ".join(
            f"{p} {_cell(v)}" for p, v in sorted(cross.items()))
    settle = [] if len(pairs) == 3 else ["all three pairs"]
    settle += [f"{p}: >= 2 seeds (n={_stats(v)[2]})" for p, v in sorted(pairs.items()) if _stats(v)[2] < 2]
    return _combine(*verdicts), evidence, settle


def _projection_dims(jobs: list[Job], optimizer: str) -> list[float]:
    """d_int90 of every (model, projection seed) search of ``optimizer`` that reached the target."""
    out = []
    for rec in probe_records(jobs, "intrinsic_dim"):
        if rec.get("optimizer") == optimizer:
            for search in (rec.get("result") or {}).get("per_seed") or []:
                if isinstance(search, dict) and search.get("d_int90") is not None:
                    out.append(float(search["d_int90"]))
    return out


def _intrinsic_models(jobs: list[Job]) -> dict[str, dict[int, tuple[float, bool, float]]]:
    """``{optimizer: {seed: (d, bound, reached_90)}}``: a model's d_int90, or, where none of its
    projection seeds reached the target, the largest d tried with ``bound`` True (its d_int90
    lies above it, for the probe's budget). Of several records of one model, one that reached
    the target wins, then the higher bound."""
    out: dict[str, dict[int, tuple[float, bool, float]]] = defaultdict(dict)
    for rec in probe_records(jobs, "intrinsic_dim"):
        sc = rec.get("scalars") or {}
        d, d_max = scalar_value(sc, "d_int90"), scalar_value(sc, "d_max")
        reached = scalar_value(sc, "reached_90")
        reached = math.nan if reached is None else reached
        if d is not None and math.isfinite(d):
            entry = (d, False, reached)
        elif d is not None and math.isnan(d) and d_max is not None and math.isfinite(d_max):
            entry = (d_max, True, reached)
        else:
            continue  # no value and no bound (e.g. a record without d_max)
        opt, seed = rec.get("optimizer", "?"), int(rec.get("seed", 0))
        old = out[opt].get(seed)
        if old is None or (old[1] and (not entry[1] or entry[0] > old[0])) or (not old[1] and not entry[1]):
            out[opt][seed] = entry
    return dict(out)


def claim_intrinsic(jobs: list[Job]) -> tuple[str, str, list[str]]:
    # A model none of whose projection seeds reached the target has no d_int90, only the lower
    # bound "above the largest d tried". Counted at its bound, the mean and its 2-s.e. margin
    # understate the truth: they can support "sizeable" but never contradict it, and neither can
    # a model whose d_int90 averages only the seeds that reached (the others lie higher).
    models = _intrinsic_models(jobs)
    if not models:
        return "no data", "", ["probe=intrinsic_dim"]
    n_params = next((int(s["n_params"]) for s in trainings(jobs) if s.get("n_params")), None)
    verdicts: list[tuple[str, list[str]]] = []  # (verdict, what would settle it) per optimizer
    parts = []
    for opt in sorted(models, key=_rank):
        entries = list(models[opt].values())
        values = [d for d, bound, _ in entries if not bound]
        bounds = [d for d, bound, _ in entries if bound]
        every_seed = all(r == 1 for *_, r in entries)
        m, se, n = _stats(values + bounds)
        # two models can share a d_int90 (the search's grid) while their projection seeds differ
        _, se_projection, n_projection = _stats(_projection_dims(jobs, opt))
        over = "models"
        if math.isfinite(se) and math.isfinite(se_projection) and se_projection > se:
            se, n, over = se_projection, n_projection, "searches"
        margin = 2 * se if math.isfinite(se) else math.inf  # one seed: no interval
        far = min(values + bounds) > 10 * 15
        line = SIZEABLE_FRACTION * n_params if n_params else math.nan
        note = _marginal(m - line, se, n) if far and math.isfinite(line) else ""
        more = [f"{_MORE_SEEDS}{opt} d_int90 vs {line:,.0f} is {note}"] if note else []
        below = not far or m + margin < line
        if n_params is None:
            verdicts.append(("not resolved", ["the parameter count (train_summary.json n_params)"]))
        elif far and m - margin >= line:
            verdicts.append(("supported", more))
        elif below and not bounds and every_seed:
            verdicts.append(("contradicted", more if far else []))
        elif below or (bounds and not values):
            # (toward) the line, but some searches missed the target: their d_int90 lie higher
            verdicts.append(("not resolved", [f"{opt}: every projection seed reaching the target "
                                              "(a larger probe.d_max or probe.epochs)"]))
        else:
            # one trained model has no spread across models, which projection seeds cannot give
            more_what = "more projection seeds or trained seeds" if len(entries) > 1 else ">= 2 trained seeds"
            verdicts.append(("not resolved", [f"{opt}: {more_what}"]))
        frac = f", {m / n_params:.2%} of {n_params:,} parameters" if n_params else ""
        used = f", s.e. {se:,.0f} over {n} {over}" if math.isfinite(se) else ""
        if bounds:
            missed = (f"{len(bounds)} of {len(entries)} models missed the target (above "
                      f"{', '.join(f'{b:,.0f}' for b in sorted(bounds))}, the largest d tried)")
            text = f"{opt} d_int90 {_cell(values + bounds)} counting those at that d{frac}{used}"
            text = f"{opt}: {missed}; " + text[len(opt) + 1:]
        else:
            text = f"{opt} d_int90 {_cell(values)}{frac}{used}"
        parts.append(text + f" (fraction of projection seeds reaching the target: "
                     f"{_cell([r for *_, r in entries])})")
    # a claim about the setup: one optimizer's models cannot settle it for the others
    missing = [o for o in sorted({j.optimizer for j in jobs}, key=_rank) if o not in models]
    if missing:
        verdicts.append(("not resolved", [f"probe=intrinsic_dim for {', '.join(missing)}"]))
    verdict, settle = _merge(*verdicts)
    return (verdict, "; ".join(parts) + f" (sizeable: >= {SIZEABLE_FRACTION:.0%} of the "
            "parameters beyond 2 s.e., the larger of the one over models and the one over every "
            "projection seed's search; far from 15: every seed > 150)", settle)


CLAIMS: list[tuple[str, Callable[[list[Job]], tuple[str, str, list[str]]]]] = [
    ("AdamW reaches the best validation accuracy and converges fastest", claim_accuracy),
    ("AdamW's solution is the sharpest (largest lambda_max), SGD+momentum's the flattest", claim_sharpness),
    ("The Hessians at all three solutions are indefinite", claim_indefinite),
    ("AdamW has the lowest gradient-noise-to-curvature ratio lambda_C/lambda_H, and the ratio predicts "
     "performance better than lambda_max", claim_noise),
    ("SGD and SGD+momentum lie in one linearly connected basin; AdamW's is separated by a large barrier",
     claim_linear),
    ("Low-loss curved paths (AutoNEB) connect all three solutions", claim_curved),
    ("A 15-dimensional subspace is far from enough; the intrinsic dimension is a sizeable fraction of "
     "the parameter count", claim_intrinsic),
]


def findings_section(jobs: list[Job]) -> str:
    """The report's "Findings" section: one row per claim (verdict, numbers, what would settle it)."""
    lines = ["## Findings\n",
             "Each claim of earlier analyses of this setup, checked against this sweep's seeds "
             "(rules: `losslands.report.findings`; a difference counts beyond 2 standard errors).\n",
             "| # | claim | verdict | numbers (mean ± std over seeds) | what would settle it |",
             "|---|---|---|---|---|"]
    for i, (claim, check) in enumerate(CLAIMS, 1):
        verdict, evidence, settle = check(jobs)
        if verdict == "contradicted" and not any(x.startswith(_MORE_SEEDS) for x in settle):
            settle = []  # a conjunction with one part clearly contradicted is settled, whatever the rest shows
        lines.append(f"| {i} | {claim} | **{verdict}** | {evidence or '-'} | {'; '.join(settle) or '-'} |")
    return "\n".join(lines) + "\n"
