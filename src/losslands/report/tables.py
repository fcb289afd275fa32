"""Aggregation over seeds (mean +- std, n) and Markdown tables."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any


def mean_std(values: Iterable[float | None]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for a single value) and count of finite values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return m, sd, n


def num(x: float, digits: int) -> str:
    """``x`` to ``digits`` significant digits, as ``%g`` where that has a decimal point and as a
    whole number with thousands separators where ``%g`` would switch to an exponent
    (``34,740 ± 110``, not ``3.474e+04 ± 1.1e+02``), up to 1e15."""
    if not math.isfinite(x) or x == 0:
        return f"{x:.{digits}g}"
    exponent = int(f"{x:.{digits - 1}e}".split("e")[1])  # after rounding: 999.96 -> 1.000e+03
    if not digits - 1 <= exponent < 15:
        return f"{x:.{digits}g}"
    return f"{round(x, digits - 1 - exponent):,.0f}"


def fmt(m: float, sd: float, n: int) -> str:
    """``mean ± std (n)``, the mean to 4 significant digits and the std to 2 (:func:`num`);
    ``–`` when there is no value."""
    if n == 0 or math.isnan(m):
        return "–"
    if n == 1:
        return f"{num(m, 4)} (n=1)"
    return f"{num(m, 4)} ± {num(sd, 2)} (n={n})"


def fmt_values(values: Sequence[float | None], null: str = "not finite") -> str:
    """:func:`fmt` of ``values``, saying what the mean left out: ``None`` is a missing value
    (no result for that seed), NaN (a JSON null) a value the probe could not give, counted
    under ``null`` (its reason, e.g. ``not reached``), ±inf a value that is not finite, e.g.
    ``12 ± 2.8 (n=2 of 3, 1 not reached)``."""
    m, sd, n = mean_std(values)
    missing = sum(v is None for v in values)
    nan = sum(v is not None and math.isnan(v) for v in values)
    infinite = len(values) - n - missing - nan
    dropped: dict[str, int] = {}
    for k, what in ((nan, null), (infinite, "not finite"), (missing, "missing")):
        if k:
            dropped[what] = dropped.get(what, 0) + k
    if not dropped:
        return fmt(m, sd, n)
    counts = f"n={n} of {len(values)}, " + ", ".join(f"{k} {what}" for what, k in dropped.items())
    if n == 0:
        return f"– ({counts})"
    return f"{num(m, 4)} ({counts})" if n == 1 else f"{num(m, 4)} ± {num(sd, 2)} ({counts})"


def scalar_value(values: dict[str, Any], key: str) -> float | None:
    """``values[key]`` as a float: None when the key is absent, NaN for JSON null (how NaN is
    written), ±inf for ``"inf"``/``"-inf"``."""
    if key not in values:
        return None
    v = values[key]
    if v is None:
        return math.nan
    if isinstance(v, str):
        return {"inf": math.inf, "-inf": -math.inf}.get(v.lower(), math.nan)
    return float(v)


def group_scalars(records: Sequence[dict[str, Any]], key: str = "optimizer") -> dict[str, dict[str, list[float | None]]]:
    """``{group: {metric: [values over seeds]}}`` from probe records' ``scalars``.

    Every record contributes to every metric any record reports: NaN (JSON null) and ±inf as
    they are, None where the record lacks the metric or did not complete, so
    :func:`fmt_values` can say how many seeds the mean leaves out.
    """
    records_by_group: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        records_by_group[r.get(key) or (r.get("result") or {}).get(key) or "?"].append(r)
    scalars = {g: [_numeric_scalars(r) for r in recs] for g, recs in records_by_group.items()}
    # every metric any group reports, so a group whose seeds all failed shows them as missing
    keys = sorted({k for group in scalars.values() for s in group for k in s})
    out: dict[str, dict[str, list[float | None]]] = defaultdict(lambda: defaultdict(list))
    for g, group in scalars.items():
        for k in keys:
            out[g][k] = [scalar_value(s, k) for s in group]
    return out


def _numeric_scalars(record: dict[str, Any]) -> dict[str, Any]:
    """A completed record's numeric scalars as JSON holds them (numbers, null, "inf")."""
    if record.get("status", "completed") != "completed":
        return {}
    return {k: v for k, v in (record.get("scalars") or {}).items()
            if v is None or (isinstance(v, str) and v.lower() in ("inf", "-inf", "nan"))
            or (isinstance(v, (int, float)) and not isinstance(v, bool))}


def markdown_table(groups: dict[str, dict[str, list[float]]], metrics: Sequence[str], label: str = "optimizer",
                   order: Sequence[str] | None = None, nulls: Mapping[str, str] | None = None) -> str:
    """A Markdown table: one row per group, one column per metric, cells ``mean ± std (n)``;
    ``nulls`` gives a metric's reason for null values (:func:`fmt_values`)."""
    present = [m for m in metrics if any(m in g for g in groups.values())]
    if not groups or not present:
        return "_no results_\n"
    names = [g for g in (order or []) if g in groups] + sorted(g for g in groups if g not in (order or []))
    lines = ["| " + " | ".join([label, *present]) + " |", "|" + "---|" * (len(present) + 1)]
    for g in names:
        lines.append("| " + " | ".join([g, *(fmt_values(groups[g].get(m, []), **({"null": nulls[m]} if m in (nulls or {}) else {}))
                                           for m in present)]) + " |")
    return "\n".join(lines) + "\n"


def epochs_to_fraction(history: Sequence[dict[str, Any]], fraction: float = 0.9, key: str = "val/acc") -> int | None:
    """First epoch whose ``key`` reaches ``fraction`` of the final value (None without history)."""
    vals = [h.get(key) for h in history if h.get(key) is not None]
    if not vals:
        return None
    target = fraction * vals[-1]
    for h in history:
        if h.get(key) is not None and h[key] >= target:
            return int(h["epoch"])
    return None
