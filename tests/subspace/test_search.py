"""search_dimension on monotone closed forms: it finds the exact threshold in few evaluations."""

from __future__ import annotations

import math

import pytest

from losslands.subspace.search import search_dimension


@pytest.mark.parametrize("threshold", [1, 7, 100, 2999, 30000, 183242])
def test_finds_the_threshold_of_a_step_function(threshold):
    calls = []

    def score(d):
        calls.append(d)
        return 1.0 if d >= threshold else 0.0

    res = search_dimension(score, 0.5, d_start=1000, d_max=183242, growth=3.0, resolution=1e-9)
    assert res.d_int == threshold and res.resolved
    assert res.d_below is None if threshold == 1 else res.d_below == threshold - 1
    assert len(calls) == len(set(calls)) <= 30  # each d trained once; ~log3 + log2 steps


def test_stops_at_the_resolution_and_interpolates():
    def score(d):  # accuracy rising linearly in log d, crossing 0.5 at d = 5000
        return 0.5 + 0.1 * math.log(d / 5000)

    res = search_dimension(score, 0.5, d_start=1000, d_max=10**6, resolution=0.25)
    assert res.d_below < 5000 <= res.d_int and res.d_int / res.d_below <= 1.25
    assert res.d_interp == pytest.approx(5000, rel=1e-9)  # exact for a log-linear curve
    assert len(res.tried) <= 6


def test_not_reached_reports_none_with_the_largest_failure():
    res = search_dimension(lambda d: 0.0, 0.5, d_start=10, d_max=500, growth=4.0)
    assert res.d_int is None and res.d_below == 500 and not res.resolved
    assert [d for d, _ in res.tried] == [10, 40, 160, 500]


def test_bad_arguments():
    with pytest.raises(ValueError, match="d_start"):
        search_dimension(lambda d: 1.0, 0.5, d_start=0, d_max=10)
    with pytest.raises(ValueError, match="hint"):
        search_dimension(lambda d: 1.0, 0.5, d_start=1, d_max=10, hint=(5, 5))


def _step(threshold, calls):
    def score(d):
        calls.append(d)
        return 1.0 if d >= threshold else 0.0
    return score


@pytest.mark.parametrize("hint", [(22795, 30000), (30000, 39482), (100, 132), (150000, 183242), (1, 2)])
@pytest.mark.parametrize("threshold", [1, 2999, 30000, 183242])
def test_a_hint_changes_only_the_number_of_trainings(threshold, hint):
    calls = []
    res = search_dimension(_step(threshold, calls), 0.5, d_start=1000, d_max=183242, resolution=1e-9, hint=hint)
    plain = search_dimension(_step(threshold, []), 0.5, d_start=1000, d_max=183242, resolution=1e-9)
    assert (res.d_int, res.d_below, res.resolved) == (plain.d_int, plain.d_below, plain.resolved)
    assert calls[:2] == [hint[1], hint[0]] or calls[:1] == [hint[1]] and threshold > hint[1]
    assert len(calls) == len(set(calls)) <= 40


def test_a_hint_that_still_brackets_costs_two_trainings_and_a_near_miss_three():
    calls = []
    res = search_dimension(_step(25000, calls), 0.5, d_start=10000, d_max=183242, resolution=0.5,
                           hint=(22795, 30000))
    assert calls == [30000, 22795] and (res.d_below, res.d_int) == (22795, 30000) and res.resolved
    calls.clear()
    # the threshold moved one bracket down: widened by the hint's ratio, 30000 / 22795
    res = search_dimension(_step(20000, calls), 0.5, d_start=10000, d_max=183242, resolution=0.5,
                           hint=(22795, 30000))
    assert calls == [30000, 22795, math.floor(22795 / (30000 / 22795))]
    assert res.d_below < 20000 <= res.d_int == 22795 and res.resolved
    calls.clear()
    # one bracket up
    res = search_dimension(_step(35000, calls), 0.5, d_start=10000, d_max=183242, resolution=0.5,
                           hint=(22795, 30000))
    assert calls == [30000, math.ceil(30000 * 30000 / 22795)] and res.d_below == 30000 < 35000 <= res.d_int
    # without the hint the same threshold costs more
    calls.clear()
    search_dimension(_step(35000, calls), 0.5, d_start=10000, d_max=183242, resolution=0.5)
    assert len(calls) > 3


@pytest.mark.parametrize("hint", [None, (1000, 1500), (22795, 30000), (30000, 39482), (90000, 183242)])
@pytest.mark.parametrize("threshold", [5, 17000, 36000, 120000])
def test_with_or_without_a_hint_the_bracket_meets_the_resolution(threshold, hint):
    res = search_dimension(_step(threshold, []), 0.5, d_start=30000, d_max=183242, resolution=0.5, hint=hint)
    assert res.resolved and res.d_below < threshold <= res.d_int and res.d_int / res.d_below <= 1.5


def test_a_hint_when_nothing_reaches_the_target_ends_at_d_max():
    calls = []
    res = search_dimension(_step(10**9, calls), 0.5, d_start=10, d_max=5000, hint=(1000, 1500))
    assert res.d_int is None and res.d_below == 5000 and not res.resolved
    assert calls[0] == 1500 and calls[-1] == 5000 and len(calls) == len(set(calls))
    with pytest.raises(ValueError, match="integers"):
        search_dimension(lambda d: 1.0, 0.5, d_start=1, d_max=10, hint=(2.5, 2.9))
