"""Aggregation over seeds (mean +- std, n) and Markdown tables."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any


def mean_std(values: Iterable[float]) -> tuple[float, float, int]:
    """Mean, sample standard deviation (ddof=1; 0 for a single value) and count of finite values."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    m = sum(xs) / n
    sd = math.sqrt(sum((x - m) ** 2 for x in xs) / (n - 1)) if n > 1 else 0.0
    return m, sd, n


def fmt(m: float, sd: float, n: int) -> str:
    """``mean ± std (n)`` with 4 significant digits; ``–`` when there is no value."""
    if n == 0 or math.isnan(m):
        return "–"
    if n == 1:
        return f"{m:.4g} (n=1)"
    return f"{m:.4g} ± {sd:.2g} (n={n})"


def group_scalars(records: Sequence[dict[str, Any]], key: str = "optimizer") -> dict[str, dict[str, list[float]]]:
    """``{group: {metric: [values over seeds]}}`` from probe records' ``scalars``."""
    out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in records:
        g = r.get(key) or r.get("result", {}).get(key) or "?"
        for k, v in (r.get("scalars") or {}).items():
            if isinstance(v, (int, float)) and v is not None:
                out[g][k].append(float(v))
    return out


def markdown_table(groups: dict[str, dict[str, list[float]]], metrics: Sequence[str], label: str = "optimizer",
                   order: Sequence[str] | None = None) -> str:
    """A Markdown table: one row per group, one column per metric, cells ``mean ± std (n)``."""
    present = [m for m in metrics if any(m in g for g in groups.values())]
    if not groups or not present:
        return "_no results_\n"
    names = [g for g in (order or []) if g in groups] + sorted(g for g in groups if g not in (order or []))
    lines = ["| " + " | ".join([label, *present]) + " |", "|" + "---|" * (len(present) + 1)]
    for g in names:
        lines.append("| " + " | ".join([g, *(fmt(*mean_std(groups[g].get(m, []))) for m in present)]) + " |")
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
