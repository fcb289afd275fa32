"""Find the smallest subspace dimension that reaches a target, in few trainings.

Li et al. (2018) sweep ``d`` over a grid; each point is a full training. Accuracy grows with
``d`` (up to training noise), so a geometric bracket followed by bisection in ``log d`` finds
the threshold to a stated relative resolution in about ``log_g(d*/d0) + log2(log(g) /
log(1 + resolution))`` trainings instead of a whole grid.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field


@dataclass
class DimensionSearch:
    """Outcome of :func:`search_dimension`.

    Attributes:
        d_int: the smallest tried ``d`` that reached the target, or None.
        d_below: the largest tried ``d`` below the target (None when the first reached it at
            ``d = 1``): the threshold lies in ``(d_below, d_int]``.
        tried: ``(d, score)`` in the order tried.
        resolved: whether ``d_int / d_below <= 1 + resolution`` (or they are adjacent integers).
    """

    d_int: int | None
    d_below: int | None
    tried: list[tuple[int, float]] = field(default_factory=list)
    resolved: bool = False

    @property
    def d_interp(self) -> float | None:
        """Log-linear interpolation of the target crossing between ``d_below`` and ``d_int``."""
        if self.d_int is None:
            return None
        if self.d_below is None:
            return float(self.d_int)
        scores = dict(self.tried)
        lo, hi = scores[self.d_below], scores[self.d_int]
        return _interp(self.d_below, lo, self.d_int, hi, self._target)

    _target: float = 0.0


def _interp(d0: int, a0: float, d1: int, a1: float, target: float) -> float:
    if a1 <= a0:
        return float(d1)
    frac = min(max((target - a0) / (a1 - a0), 0.0), 1.0)
    return math.exp(math.log(d0) + frac * (math.log(d1) - math.log(d0)))


def _factors(first: float, cap: float) -> Iterator[float]:
    """Bracketing factors: ``first``, then squared at each step, never above ``cap``."""
    f = min(first, cap)
    while True:
        yield f
        f = min(f * f, cap)


def search_dimension(
    score: Callable[[int], float],
    target: float,
    *,
    d_start: int,
    d_max: int,
    growth: float = 3.0,
    resolution: float = 0.25,
    hint: tuple[int, int] | None = None,
) -> DimensionSearch:
    """The smallest ``d`` in ``1..d_max`` with ``score(d) >= target``, assuming ``score`` grows
    with ``d``.

    Bracket: from ``d_start``, multiply by ``growth`` until the target is reached (or ``d_max``
    fails), or divide until it is missed (or ``d = 1`` reaches it). Then bisect in ``log d``
    until the bracket's ratio is at most ``1 + resolution``.

    With ``hint = (d_below, d_int)``, a bracket found on a similar curve (another projection
    seed of the same model), its two ends are tried first: when the threshold still lies between
    them and their ratio is at most ``1 + resolution``, the search costs two trainings. Otherwise
    the bracket is widened from the nearer end by the hint's own ratio, squared at each further
    step up to ``growth`` (an exponential search around the hint), then bisected as usual. Either
    way a resolved search ends in a bracket of ratio at most ``1 + resolution`` around the
    threshold; the hint moves that bracket within the resolution and changes the number of
    trainings.

    Raises:
        ValueError: ``d_start`` outside ``1..d_max``, ``growth <= 1``, ``resolution <= 0`` or a
            hint that is not integers ``1 <= d_below < d_int <= d_max``.
    """
    if not 1 <= d_start <= d_max:
        raise ValueError(f"d_start={d_start} must lie in 1..d_max={d_max}")
    if not growth > 1 or not resolution > 0:
        raise ValueError(f"need growth > 1 and resolution > 0, got {growth}, {resolution}")
    if hint is not None and (any(int(h) != h for h in hint) or not 1 <= hint[0] < hint[1] <= d_max):
        raise ValueError(f"hint={tuple(hint)} must be integers (d_below, d_int) with 1 <= d_below < d_int <= d_max={d_max}")
    tried: dict[int, float] = {}

    def reached(d: int) -> bool:
        if d not in tried:
            tried[d] = float(score(d))
        return tried[d] >= target

    def down(hi: int, factors: Iterator[float]) -> tuple[int | None, int]:
        # hi reached the target: divide until a d misses it (or d = 1 reaches it)
        while hi > 1:
            d = max(1, math.floor(hi / next(factors)))
            if not reached(d):
                return d, hi
            hi = d
        return None, hi

    def up(lo: int, factors: Iterator[float]) -> tuple[int, int | None]:
        # lo missed the target: multiply until a d reaches it (or d_max misses it)
        while lo < d_max:
            d = min(d_max, math.ceil(lo * next(factors)))
            if reached(d):
                return lo, d
            lo = d
        return lo, None

    lo: int | None
    hi: int | None
    if hint is None:
        if reached(d_start):
            lo, hi = down(d_start, _factors(growth, growth))
        else:
            lo, hi = up(d_start, _factors(growth, growth))
    else:
        h_lo, h_hi = int(hint[0]), int(hint[1])
        ratio = h_hi / h_lo
        if not reached(h_hi):
            lo, hi = up(h_hi, _factors(ratio, growth))
        elif not reached(h_lo):
            lo, hi = h_lo, h_hi
        else:
            lo, hi = down(h_lo, _factors(ratio, growth))
    if hi is not None and lo is not None:
        while hi / lo > 1 + resolution and hi - lo > 1:
            mid = min(hi - 1, max(lo + 1, round(math.sqrt(lo * hi))))
            if reached(mid):
                hi = mid
            else:
                lo = mid
    resolved = hi is not None and (lo is None or hi / lo <= 1 + resolution or hi - lo <= 1)
    out = DimensionSearch(d_int=hi, d_below=lo, tried=list(tried.items()), resolved=resolved)
    out._target = target
    return out
