"""Summary statistics with one convention everywhere."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def mean_std(
    values: Iterable[float | None], *, drop_missing: bool = True
) -> tuple[float, float, int]:
    """Mean, sample standard deviation (``ddof=1``) and count of the finite values.

    The std is NaN for a single value (one value says nothing about spread); both are NaN when
    no value is finite. ``None``, NaN and infinities are not counted: callers that must show
    what was dropped compare the count with ``len(values)``. With ``drop_missing=False`` any
    such value makes the mean and std NaN instead (a probe's per-subset summary).
    """
    values = list(values)
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(xs)
    if n == 0 or (not drop_missing and n < len(values)):
        return math.nan, math.nan, 0
    t = torch.tensor(xs, dtype=torch.float64)
    return float(t.mean()), float(t.std()) if n > 1 else math.nan, n
