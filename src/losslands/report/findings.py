"""The report's opening section: the reference study's claims, each checked against the sweep.

Every claim gets a verdict from the per-seed numbers, the numbers themselves (mean ± std and the
count of seeds) and, where the data do not settle it, what would. The rules are fixed here so
that a verdict means the same in every report:

- **A difference** between two optimizers is paired by seed (one seed fixes both models'
  initialisation and data order): the mean of the per-seed differences over the seeds both
  have, with its standard error ``sd / sqrt(n)`` (unpaired, ``sqrt(s1²/n1 + s2²/n2)`` over the
  fewer seeds, where fewer than 2 seeds are shared). It counts when it exceeds twice its standard
  error (about a 95% interval). With a few seeds a t-interval is wider: a difference that counts
  but lies within the two-sided 95% t-interval with ``n - 1`` degrees of freedom is marked
  *marginal*, and more seeds are listed as what would settle it. Otherwise it is unresolved,
  and the seeds that would resolve a difference of the observed size are the fewest N with
  ``|d| >= t(N - 1) se sqrt(n / N)``.
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
  2 seed pairs; its pairs ``(s, s + 1 mod 3)`` share models, so its s.e. treats dependent values
  as independent. AutoNEB's baseline is shown beside its pairs; claim 6 asks for connection only.
- **Predicts better** (one quantity tracks val acc more closely than another): Williams' t for
  two correlations that share one variable, over all models and again within optimizers; it
  counts when both are beyond the t threshold in the same direction (:func:`_predicts_better`).
- **Sizeable fraction** (intrinsic dimension): at least :data:`SIZEABLE_FRACTION` of the
  parameters, beyond 2 standard errors. Each search brackets the crossing, ``(d_below,
  d_int90]`` (:func:`losslands.probes.intrinsic_dim.brackets`): the lower ends can support the
  claim, the upper ends contradict it. A model whose search never reached the target counts at
  the largest d tried, a lower end only. A lower end bounds the intrinsic dimension only where
  its run stopped on its own (target or plateau): a run that used its whole budget still below
  the target (*budget-bound*) might reach it with a longer one, so a budget-bound search can
  contradict the claim but not support it. A model's value is a mean over projection seeds, so
  the standard error is the larger of the one across trained models and the one across every
  (model, projection seed) search; the t-interval's degrees of freedom count trained models.

Claims are those of earlier analyses of the reference setup (the study issue lists them).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from losslands.probes.intrinsic_dim import Bracket, brackets
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


def _difference(a: dict[int, float | None], b: dict[int, float | None]) -> tuple[float, float, int]:
    """``(a - b, its standard error, n)`` of two ``{seed: value}``.

    A seed gives both sides one initialisation and data order, so the seeds pair them: over the
    >= 2 seeds both have, the mean of the per-seed differences and its standard error (n = those
    seeds). Otherwise the difference of the means with the unpaired standard error (n = the
    fewer seeds; NaN where either side has < 2).
    """
    common = [s for s in a if s in b and _finite([a[s]]) and _finite([b[s]])]
    if len(common) >= 2:
        return _stats([a[s] - b[s] for s in common])
    ma, sa, na = _stats(list(a.values()))
    mb, sb, nb = _stats(list(b.values()))
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


def _t975(df: int) -> float:
    """The threshold a difference must reach in s.e.: t with ``df`` degrees of freedom up to the
    table's end, 2 beyond it (where the two differ by < 11%)."""
    if df < 1:
        raise ValueError(f"t needs >= 1 degree of freedom, got {df}")
    return _T975[df - 1] if df <= len(_T975) else 2.0


def _seeds_needed(d: float, se: float, n: int) -> int | None:
    """The fewest seeds N at which a difference ``d`` with s.e. ``se`` at ``n`` seeds would count
    and not be marginal: ``|d| >= t(N - 1) se sqrt(n / N)`` (None: not within 10,000)."""
    if not (math.isfinite(d) and math.isfinite(se)) or d == 0 or n < 2:
        return None
    return next((m for m in range(n + 1, 10_001)
                 if abs(d) >= _t975(m - 1) * se * math.sqrt(n / m) * (1 - 1e-12)), None)


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
        d, se, n = _difference(values[label], values[other])
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


def _pairs(jobs: list[Job], probe: str, key: str = "barrier") -> dict[str, dict[int, float]]:
    """``{pair label: {seed: value}}``, the label ``a-b`` (cross-seed: ``a-a``, keyed by the seed
    of the record's own model). A pair measured from both ends at one seed counts once, as the
    mean of the two."""
    found: dict[str, dict[int, list[float]]] = defaultdict(lambda: defaultdict(list))
    for rec in probe_records(jobs, probe):
        other = (rec.get("result") or {}).get("other")
        value = scalar_value(rec.get("scalars") or {}, key)
        if other and value is not None:
            label = "-".join(sorted((rec.get("optimizer", "?"), other), key=_rank))
            found[label][int(rec.get("seed", 0))].append(value)
    return {p: {s: sum(v) / len(v) for s, v in by_seed.items()} for p, by_seed in found.items()}


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
    v2, e2, s2 = _predicts_better(ratio, lam, acc)
    verdict, settle = _merge((v1, s1), (v2, s2))
    return verdict, ". ".join(x for x in (e1 and f"lambda_C/lambda_H: {e1}", e2) if x), settle


def _predicts_better(a: Values, b: Values, y: Values,
                     names: tuple[str, str] = ("noise ratio", "lambda_max")) -> tuple[str, str, list[str]]:
    """Does ``a`` track ``y`` more closely than ``b`` does (larger ``|r|``)?

    Williams' t for two correlations that share ``y`` (Steiger 1980), over every model and again
    within optimizers (each value centred on its optimizer's mean, ``g - 1`` more degrees of
    freedom spent). The models form one cluster per optimizer, so the test over all of them
    mostly compares optimizers; a verdict needs both tests beyond t in the same direction.
    """
    models = [(o, s) for o in y for s in y[o] if o in a and s in a[o] and o in b and s in b[o]
              and all(math.isfinite(v) for v in (a[o][s], b[o][s], y[o][s]))]
    groups = {o for o, _ in models}
    if len(models) < 4:
        return ("no data", "too few models with both numbers to correlate",
                [f"{names[0]}, {names[1]} and val acc on >= 4 models"])
    cols = [[v[o][s] for o, s in models] for v in (y, a, b)]
    pooled = _williams(*cols)
    centred = []
    for c in cols:
        means = {g: statistics.fmean(x for x, (o, _) in zip(c, models, strict=True) if o == g) for g in groups}
        centred.append([x - means[o] for x, (o, _) in zip(c, models, strict=True)])
    within = _williams(*centred, spent=len(groups) - 1)
    texts, signs = [], []
    for name, (r_a, r_b, t, df) in (("over", pooled), ("within optimizers,", within)):
        if df < 1 or not math.isfinite(t):
            why = "too few to test" if df < 1 else "no spread to test"
            texts.append(f"{name} {len(models)} models: {why}")
            signs.append(0)
            continue
        texts.append(f"{name} {len(models)} models: r {r_a:+.2f} vs {r_b:+.2f}, Williams t {t:+.2f} "
                     f"({df} df, needs {_t975(df):.3g})")
        signs.append(1 if t >= _t975(df) else -1 if t <= -_t975(df) else 0)
    evidence = f"Pearson r with val acc, {names[0]} vs {names[1]}, " + "; ".join(texts)
    if signs[0] == signs[1] != 0:
        return ("supported" if signs[0] > 0 else "contradicted"), evidence, []
    return "not resolved", evidence, ["many more models (seeds, optimizers, learning rates) to "
                                      "separate the two correlations"]


def _williams(y: Sequence[float], a: Sequence[float], b: Sequence[float],
              spent: int = 0) -> tuple[float, float, float, int]:
    """``(r_ya, r_yb, t, df)``: Williams' t of ``|r_ya| - |r_yb|`` on data, with ``n - 3 - spent``
    degrees of freedom (``spent``: means removed beyond the overall one)."""
    n = len(y) - spent
    r_a, r_b, r_ab = _r(y, a), _r(y, b), _r(a, b)
    if n <= 3 or not all(math.isfinite(r) for r in (r_a, r_b, r_ab)):
        return r_a, r_b, math.nan, n - 3
    # orient a and b so that both correlate positively with y: the test compares magnitudes
    t = williams_t(abs(r_a), abs(r_b), r_ab * math.copysign(1, r_a) * math.copysign(1, r_b), n)
    return r_a, r_b, t, n - 3


def williams_t(r12: float, r13: float, r23: float, n: int) -> float:
    """Williams' t for ``r12 - r13``, two correlations that share variable 1, from ``n``
    observations, ``n - 3`` degrees of freedom (Steiger 1980, Psychological Bulletin 87, eq. 7)."""
    det = 1 - r12**2 - r13**2 - r23**2 + 2 * r12 * r13 * r23
    mean = (r12 + r13) / 2
    denom = 2 * (n - 1) / (n - 3) * det + mean**2 * (1 - r23) ** 3
    return (r12 - r13) * math.sqrt((n - 1) * (1 + r23) / denom) if denom > 0 else math.nan


def _r(x: Sequence[float], y: Sequence[float]) -> float:
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y, strict=True))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else math.nan


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
    cross = {p: list(v.values()) for p, v in pairs.items() if len(set(p.split("-"))) == 1}
    if "sgd-momentum" not in same or not any("adamw" in p for p in same):
        return "no data", "", ["probe=interpolation for sgd-momentum and the AdamW pairs"]
    parts: list[tuple[str, list[str]]] = []  # (verdict, what would settle it) per part of the claim
    sizes = []
    sm = _connected(list(same["sgd-momentum"].values()))
    parts.append(({"connected": "supported", "separated": "contradicted"}.get(sm, "not resolved"), []))
    for p in (p for p in same if "adamw" in p):
        d, se, n = _difference(same[p], same["sgd-momentum"])
        if math.isfinite(se) and d > 2 * se and _connected(list(same[p].values())) == "separated":
            note = _marginal(d, se, n)
            parts.append(("supported", [f"{_MORE_SEEDS}{p} vs sgd-momentum barrier is {note}"] if note else []))
        elif math.isfinite(se) and d < 2 * se and _connected(list(same[p].values())) == "connected":
            parts.append(("contradicted", []))
        else:
            parts.append(("not resolved", [f"{p} vs sgd-momentum barrier: {d:+.3g} ± {se:.2g}" if math.isfinite(se)
                                           else f"{p} and sgd-momentum: >= 2 seeds each"]))
        # "large": against the barrier between solutions that share only the optimizer
        v, text, s = _large(p, list(same[p].values()), cross)
        parts.append((v, s))
        if text:
            sizes.append(text)
    evidence = "; ".join(f"{p} barrier {_cell(list(v.values()))}" for p, v in sorted(same.items()))
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
    pairs = {p: list(v.values()) for p, v in _pairs(jobs, "autoneb").items() if len(set(p.split("-"))) == 2}
    linear = {p: list(v.values()) for p, v in _pairs(jobs, "autoneb", "linear_barrier").items()
              if len(set(p.split("-"))) == 2}
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
    cross = {p: list(v.values()) for p, v in _pairs(jobs, "autoneb").items() if len(set(p.split("-"))) == 1}
    if cross:
        evidence += f". {_CROSS}: " + "; ".join(
            f"{p} {_cell(v)}" for p, v in sorted(cross.items()))
    settle = [] if len(pairs) == 3 else ["all three pairs"]
    settle += [f"{p}: >= 2 seeds (n={_stats(v)[2]})" for p, v in sorted(pairs.items()) if _stats(v)[2] < 2]
    return _combine(*verdicts), evidence, settle


@dataclass
class _Model:
    """One trained model's intrinsic-dimension searches (one record; see :func:`_intrinsic_models`)."""

    upper: float | None  # d_int90: mean over the projection seeds that reached the target
    lower: float | None  # mean bracket lower end; a missed model: the largest d tried
    bound: bool          # no projection seed reached the target
    reached: float       # fraction of projection seeds that reached it
    searches: list[Bracket]
    epochs: Any          # the subspace budget in passes over the data


def _intrinsic_models(jobs: list[Job]) -> dict[str, dict[int, _Model]]:
    """``{optimizer: {seed: model}}``. Of several records of one model, one that reached the
    target wins, then the higher bound."""
    out: dict[str, dict[int, _Model]] = defaultdict(dict)
    for rec in probe_records(jobs, "intrinsic_dim"):
        sc, result = rec.get("scalars") or {}, rec.get("result") or {}
        d, d_max = scalar_value(sc, "d_int90"), scalar_value(sc, "d_max")
        reached = scalar_value(sc, "reached_90")
        reached = math.nan if reached is None else reached
        searches = brackets(result) if "target_acc" in result else []
        hit = [b for b in searches if b.d_int90 is not None]
        if d is not None and math.isfinite(d):
            # the crossing's lower end is unknown where a search reached the target at its first d
            lower = (statistics.fmean(b.d_below for b in hit)
                     if hit and all(b.d_below is not None for b in hit) else None)
            entry = _Model(d, lower, False, reached, searches, result.get("epochs"))
        elif d is not None and math.isnan(d) and d_max is not None and math.isfinite(d_max):
            entry = _Model(None, d_max, True, reached, searches, result.get("epochs"))
        else:
            continue  # no value and no bound (e.g. a record without d_max)
        opt, seed = rec.get("optimizer", "?"), int(rec.get("seed", 0))
        old = out[opt].get(seed)
        if old is None or (old.bound and (not entry.bound or entry.lower > old.lower)) or (
                not old.bound and not entry.bound):
            out[opt][seed] = entry
    return dict(out)


def _spread(per_model: Sequence[float | None], per_search: Sequence[float]) -> tuple[float, float, str]:
    """Mean over models, and the larger of the s.e. over models and over every search (two models
    can share a grid point while their projection seeds differ), with what it is over."""
    m, se, n = _stats(per_model)
    _, se_search, n_search = _stats(per_search)
    if math.isfinite(se) and math.isfinite(se_search) and se_search > se:
        return m, se_search, f"{n_search} searches"
    return m, se, f"{n} models"


def claim_intrinsic(jobs: list[Job]) -> tuple[str, str, list[str]]:
    # Each search brackets the crossing: (d_below, d_int90]. "Sizeable" is supported only by the
    # lower ends, contradicted only by the upper ends. A model none of whose projection seeds
    # reached the target counts at the largest d tried, a lower end without an upper one. And
    # a lower end bounds the intrinsic dimension only where its run stopped on its own: a run
    # that used its whole budget still improving might reach the target with a longer one.
    models = _intrinsic_models(jobs)
    if not models:
        return "no data", "", ["probe=intrinsic_dim"]
    n_params = next((int(s["n_params"]) for s in trainings(jobs) if s.get("n_params")), None)
    line = SIZEABLE_FRACTION * n_params if n_params else math.nan
    verdicts: list[tuple[str, list[str]]] = []  # (verdict, what would settle it) per optimizer
    parts = []
    budget_bound: dict[str, list[str]] = {}  # {budget: optimizers} (one "settle" item each)
    for opt in sorted(models, key=_rank):
        entries = list(models[opt].values())
        n = len(entries)  # the degrees of freedom count trained models, not searches within one
        searches = [b for e in entries for b in e.searches]
        uppers = [e.upper for e in entries if not e.bound]
        lowers = [e.lower for e in entries]
        m_hi, se_hi, over_hi = _spread(uppers, [b.d_int90 for b in searches if b.d_int90 is not None])
        known = all(v is not None for v in lowers)
        m_lo, se_lo, over_lo = _spread(lowers if known else [],
                                       [b.d_below for b in searches if b.d_below is not None])
        budget = [b for b in searches if b.budget_bound]
        epochs = sorted({str(e.epochs) for e in entries if e.epochs is not None})
        every_seed = all(e.reached == 1 for e in entries)
        missed = any(e.bound for e in entries)
        if n_params is None:
            verdicts.append(("not resolved", ["the parameter count (train_summary.json n_params)"]))
        elif known and not budget and min(lowers) > 10 * 15 and m_lo - 2 * se_lo >= line:
            note = _marginal(m_lo - line, se_lo, n)
            verdicts.append(("supported", [f"{_MORE_SEEDS}{opt} bracket lower ends vs {line:,.0f} is {note}"]
                             if note else []))
        elif not missed and every_seed and (min(uppers) <= 10 * 15 or m_hi + 2 * se_hi < line):
            note = _marginal(m_hi - line, se_hi, n) if min(uppers) > 10 * 15 else ""
            verdicts.append(("contradicted", [f"{_MORE_SEEDS}{opt} d_int90 vs {line:,.0f} is {note}"]
                             if note else []))
        elif budget:
            verdicts.append(("not resolved", []))
            budget_bound.setdefault("/".join(epochs) or "?", []).append(opt)
        elif missed or not every_seed:
            verdicts.append(("not resolved", [f"{opt}: every projection seed reaching the target "
                                              "(a larger probe.d_max or probe.epochs)"]))
        elif not known:
            verdicts.append(("not resolved", [f"{opt}: the searches' brackets (the result's per_seed and runs)"]))
        else:
            # one trained model has no spread across models, which projection seeds cannot give
            verdicts.append(("not resolved", [f"{opt}: {'more projection seeds or trained seeds' if n > 1 else '>= 2 trained seeds'}"]))
        frac = f", {m_hi / n_params:.2%} of {n_params:,} parameters" if n_params and uppers else ""
        text = f"{opt} d_int90 {_cell(uppers) if uppers else 'not reached'}{frac}"
        if math.isfinite(se_hi):
            text += f", s.e. {se_hi:,.0f} over {over_hi}"
        # a model's d_int90 averages the projection seeds that reached the target: say so where
        # some did not, since their crossings lie above every d they tried
        partial = [b for e in entries if not e.bound for b in e.searches if b.d_int90 is None]
        if partial:
            tried = ", ".join(f"{d:,.0f}" for d in sorted({b.d_below for b in partial if b.d_below}))
            text += (f"; {len(partial)} of {len(searches)} searches missed the target even at the "
                     f"largest d tried ({tried}), so d_int90 and the lower ends average the others")
        if missed:
            bounds = sorted(e.lower for e in entries if e.bound)
            text = (f"{opt}: {len(bounds)} of {n} models missed the target (above "
                    f"{', '.join(f'{b:,.0f}' for b in bounds)}, the largest d tried); " + text[len(opt) + 1:])
        if known:
            text += f"; crossing above {_cell(lowers)} (bracket lower ends"
            text += f", s.e. {se_lo:,.0f} over {over_lo})" if math.isfinite(se_lo) else ")"
        if searches:
            text += (f"; budget-bound: {len(budget)} of {len(searches)} searches at "
                     f"{'/'.join(epochs) or '?'} epochs")
        parts.append(text + f" (fraction of projection seeds reaching the target: "
                     f"{_cell([e.reached for e in entries])})")
    for epochs, opts in budget_bound.items():
        verdicts.append(("not resolved", [
            f"{', '.join(opts)}: a subspace budget at which the runs just below d_int90 stop on "
            f"their own (probe.epochs above {epochs}): they used all of theirs still below the "
            "target, so d_int90 bounds the intrinsic dimension only from above"]))
    # a claim about the setup: one optimizer's models cannot settle it for the others
    missing = [o for o in sorted({j.optimizer for j in jobs}, key=_rank) if o not in models]
    if missing:
        verdicts.append(("not resolved", [f"probe=intrinsic_dim for {', '.join(missing)}"]))
    verdict, settle = _merge(*verdicts)
    return (verdict, "; ".join(parts) + f" (sizeable: >= {SIZEABLE_FRACTION:.0%} of the "
            "parameters beyond 2 s.e.: supported by the searches' lower ends (d_below, where the "
            "run there stopped on its own), contradicted by their upper ends (d_int90); s.e. the "
            "larger of the one over models and the one over every search; far from 15: every "
            "seed > 150; budget-bound: the run below d_int90 used its whole budget still below "
            "the target)", settle)


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
             "(rules: `losslands.report.findings`; a difference, paired by seed, counts beyond 2 "
             "standard errors).\n",
             "| # | claim | verdict | numbers (mean ± std over seeds) | what would settle it |",
             "|---|---|---|---|---|"]
    for i, (claim, check) in enumerate(CLAIMS, 1):
        verdict, evidence, settle = check(jobs)
        if verdict == "contradicted" and not any(x.startswith(_MORE_SEEDS) for x in settle):
            settle = []  # a conjunction with one part clearly contradicted is settled, whatever the rest shows
        lines.append(f"| {i} | {claim} | **{verdict}** | {evidence or '-'} | {'; '.join(settle) or '-'} |")
    return "\n".join(lines) + "\n"
