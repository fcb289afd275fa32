"""The report's findings: each claim's verdict follows its stated rule on known numbers."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest

from losslands.report import findings
from losslands.report.load import Job

OPTS = ("sgd", "momentum", "adamw")


def _jobs(acc=None, epochs=None, lam=None, lam_min=None, ratio=None, barriers=None, dims=None,
          n_params=100_000):
    """One Job per (optimizer, seed) with the given per-seed numbers ({opt: [seed0, seed1, ...]})."""
    jobs = []
    seeds = range(len(next(iter((acc or lam or dims or {"x": [0, 1, 2]}).values()))))
    for opt in OPTS:
        for s in seeds:
            a = acc[opt][s] if acc else 0.5
            e = epochs[opt][s] if epochs else 3
            # val acc rises linearly to its final value at epoch 12; 90% of it is reached at epoch e
            history = [{"epoch": k, "val/acc": a * (0.95 if k >= e else 0.5)} for k in range(1, 12)]
            history.append({"epoch": 12, "val/acc": a})
            summary = {"status": "completed", "hash": f"{opt}{s}", "n_params": n_params,
                       "config": {"optimizer": {"name": opt}, "seed": s},
                       "final": {"val/acc": a}, "history": history}
            probes = {}
            if lam:
                probes["lanczos"] = _rec(opt, s, "lanczos", lambda_max=lam[opt][s],
                                         lambda_min=lam_min[opt][s] if lam_min else None,
                                         abs_min_over_max=abs(lam_min[opt][s]) / lam[opt][s] if lam_min else None)
            if ratio:
                probes["noise"] = _rec(opt, s, "noise", ratio=ratio[opt][s])
            if dims:
                probes["intrinsic_dim"] = _rec(opt, s, "intrinsic_dim", d_int90=dims[opt][s], reached_90=1.0)
                probes["intrinsic_dim"]["result"] = _id_result([(dims[opt][s], round(0.8 * dims[opt][s]))])
            jobs.append(Job(Path(f"{opt}-{s}"), summary, probes))
            for (a_opt, b_opt), values in (barriers or {}).items():
                if a_opt == opt:
                    rec = _rec(opt, s, "interpolation", barrier=values[s])
                    rec["result"] = {"other": b_opt}
                    rec["probe_key"] += b_opt
                    jobs.append(Job(Path(f"{opt}-{s}-{b_opt}"), summary, {"interpolation": rec}))
    return jobs


def _rec(opt, seed, probe, **scalars):
    return {"probe": probe, "status": "completed", "optimizer": opt, "seed": seed,
            "probe_key": f"{opt}{seed}{probe}", "scalars": scalars, "result": {}}


def test_clear_differences_support_claims_1_to_3():
    acc = {"sgd": [0.60, 0.61, 0.60], "momentum": [0.66, 0.67, 0.66], "adamw": [0.72, 0.73, 0.72]}
    epochs = {"sgd": [9, 9, 10], "momentum": [6, 6, 7], "adamw": [3, 3, 4]}
    lam = {"sgd": [120, 125, 122], "momentum": [60, 62, 61], "adamw": [300, 310, 305]}
    low = {o: [-2.0, -2.5, -3.0] for o in OPTS}
    jobs = _jobs(acc=acc, epochs=epochs, lam=lam, lam_min=low)
    assert findings.claim_accuracy(jobs)[0] == "supported"
    assert findings.claim_sharpness(jobs)[0] == "supported"
    assert findings.claim_indefinite(jobs)[0] == "supported"


def test_a_reversed_difference_contradicts_and_a_positive_bottom_is_not_indefinite():
    acc = {"sgd": [0.70, 0.71, 0.70], "momentum": [0.66, 0.67, 0.66], "adamw": [0.60, 0.61, 0.60]}
    lam = {o: [100.0, 101.0, 102.0] for o in OPTS}
    low = {"sgd": [-1.0, -1.1, -0.9], "momentum": [-1.0, -1.2, -0.8], "adamw": [1e-3, 2e-3, 1e-3]}
    jobs = _jobs(acc=acc, lam=lam, lam_min=low)
    verdict, evidence, _ = findings.claim_accuracy(jobs)
    assert verdict == "contradicted"
    row = next(r for r in findings.findings_section(jobs).splitlines() if r.startswith("| 1 |"))
    assert row.endswith("| - |")  # settled: nothing left to "settle", though the epochs are tied
    # the deciding comparisons are named: adamw - sgd = -0.10 at every seed (paired: s.e. 0)
    assert "val acc, adamw vs sgd: difference -0.1 ± 0 (s.e.), against the claim" in evidence
    assert "adamw vs momentum: difference -0.06 ± 0 (s.e.)" in evidence
    verdict, evidence, _ = findings.claim_indefinite(jobs)
    assert verdict == "contradicted" and "adamw lambda_min" in evidence


def test_claim_2_names_the_comparison_that_contradicts_its_second_half():
    # adamw clearly sharpest (supported half), but momentum is not the flattest: sgd is
    lam = {"sgd": [20.0, 21.0, 22.0], "momentum": [60.0, 61.0, 62.0], "adamw": [300.0, 301.0, 302.0]}
    verdict, evidence, _ = findings.claim_sharpness(_jobs(lam=lam))
    assert verdict == "contradicted"
    assert evidence.startswith("lambda_max: sgd 21 ± 1 (n=3); momentum 61 ± 1 (n=3); adamw 301 ± 1 (n=3)")
    assert "lambda_max, momentum vs sgd: difference +40 ± 0 (s.e.), against the claim" in evidence
    assert "adamw vs" not in evidence  # the half that holds is not reported as deciding


def test_a_difference_beyond_2_se_but_inside_the_t_interval_is_marked_marginal():
    # adamw - sgd per seed -0.03, -0.06, -0.09: mean -0.06, s.e. 0.03 / sqrt(3) = 0.0173: 3.5 s.e.,
    # beyond 2 but below t_0.975(2 df) = 4.303; adamw - momentum = +0.12, 21 s.e.: not marginal
    acc = {"sgd": [0.66, 0.68, 0.70], "momentum": [0.50, 0.50, 0.50], "adamw": [0.63, 0.62, 0.61]}
    jobs = _jobs(acc=acc)
    verdict, evidence, settle = findings.claim_accuracy(jobs)
    assert verdict == "contradicted"
    assert ("val acc, adamw vs sgd: difference -0.06 ± 0.017 (s.e.), against the claim, "
            "marginal: 3.5 s.e., below t = 4.3 (2 df)") in evidence
    assert [s for s in settle if "marginal" in s] == [
        "more seeds: val acc, adamw vs sgd is marginal: 3.5 s.e., below t = 4.3 (2 df)"]
    assert "momentum is marginal" not in " ".join(settle)
    row = next(r for r in findings.findings_section(jobs).splitlines() if r.startswith("| 1 |"))
    assert "more seeds: val acc, adamw vs sgd" in row  # a marginal contradiction is not settled
    assert findings._marginal(0.06, 0.0163, 11) == ""  # beyond the table (df > 10): 2 s.e. is close to t


def test_a_firm_contradiction_settles_a_claim_whatever_its_marginal_or_open_parts_show():
    # adamw - sgd = -0.1 at every seed (firm); adamw - momentum per seed -0.03, -0.04, -0.01:
    # -0.0267 at s.e. 0.0088 (3 s.e.: marginal)
    acc = {"sgd": [0.70, 0.71, 0.70], "momentum": [0.63, 0.65, 0.61], "adamw": [0.60, 0.61, 0.60]}
    verdict, evidence, settle = findings.claim_accuracy(_jobs(acc=acc))
    assert verdict == "contradicted" and "marginal: 3 s.e." in evidence
    assert settle == []  # more seeds could undo the marginal one, not the firm one
    # only the marginal contradiction left: more seeds are what would settle it, and nothing
    # else (the epochs' open comparison cannot undo a contradiction)
    acc["sgd"] = [0.50, 0.51, 0.50]
    verdict, _, settle = findings.claim_accuracy(_jobs(acc=acc))
    assert verdict == "contradicted"
    assert settle == ["more seeds: val acc, adamw vs momentum is marginal: 3 s.e., below t = 4.3 (2 df)"]
    # claim 5: one AdamW pair firmly not large, the other marginally: settled
    small, base = [0.01, 0.0, 0.02], [1.0, 1.1, 1.2]
    barriers = {("sgd", "momentum"): small, ("momentum", "adamw"): [0.2, 0.25, 0.3],
                ("adamw", "sgd"): [0.3, 0.35, 0.4], ("sgd", "sgd"): [0.9, 1.1, 1.3],
                ("momentum", "momentum"): base, ("adamw", "adamw"): base}
    verdict, evidence, settle = findings.claim_linear(_jobs(barriers=barriers))
    assert verdict == "contradicted" and "not large, marginal" in evidence and settle == []


def test_claim_2_without_adamw_shows_the_others_values_and_no_stray_punctuation():
    lam = {"sgd": [20.0, 21.0, 22.0], "momentum": [60.0, 61.0, 62.0], "adamw": [None, None, None]}
    verdict, evidence, _ = findings.claim_sharpness(_jobs(lam=lam))
    assert evidence.startswith("lambda_max: sgd 21 ± 1 (n=3); momentum 61 ± 1 (n=3)")
    assert "  " not in evidence and "()" not in evidence


def test_claims_without_data_name_what_is_missing_and_leave_no_stray_text():
    acc = {"sgd": [0.60, 0.61, 0.62], "momentum": [0.50, 0.50, 0.50], "adamw": [0.61, 0.62, 0.63]}
    jobs = [j for j in _jobs(acc=acc) if j.optimizer != "momentum"]
    ratio_only = _jobs(ratio={o: [1.0, 1.1, 1.2] for o in OPTS})
    verdict, evidence, _ = findings.claim_noise([j for j in ratio_only if j.optimizer == "sgd"])
    assert evidence == "too few models with both numbers to correlate" and verdict == "no data"
    lam = {"sgd": [20.0, 21.0, 22.0], "momentum": [60.0, 61.0, 62.0], "adamw": [1.0, 1.0, 1.0]}
    _, _, settle = findings.claim_sharpness([j for j in _jobs(lam=lam) if j.optimizer == "sgd"])
    assert settle[0] == "run every optimizer with >= 2 seeds (momentum, adamw missing)"
    assert findings.claim_accuracy(jobs)[1].startswith("final val acc: sgd")


def test_an_unresolved_difference_says_how_many_seeds_would_resolve_it():
    # adamw - sgd per seed +0.03, -0.01, +0.02: mean 0.0133, s.e. 0.0208 / sqrt(3) = 0.0120 (1.1
    # s.e.). At N seeds the s.e. is 0.0120 sqrt(3 / N); it must reach t(N - 1) s.e.: N = 11 needs
    # 2.228 x 0.0063 = 0.0140 > 0.0133, N = 12 (beyond the t table: 2 s.e.) 0.0120 <= 0.0133
    acc = {"sgd": [0.60, 0.61, 0.62], "momentum": [0.50, 0.50, 0.50], "adamw": [0.63, 0.60, 0.64]}
    verdict, _, settle = findings.claim_accuracy(_jobs(acc=acc))
    assert verdict == "not resolved"
    d, se, n = findings._difference(dict(enumerate(acc["adamw"])), dict(enumerate(acc["sgd"])))
    diffs = np.subtract(acc["adamw"], acc["sgd"])
    assert (d, se, n) == pytest.approx((diffs.mean(), diffs.std(ddof=1) / math.sqrt(3), 3))
    assert any("adamw vs sgd" in s and "~12 seeds" in s for s in settle)
    assert findings._seeds_needed(d, se, n) == 12
    # without >= 2 shared seeds the sides are unpaired: sqrt(s1²/n1 + s2²/n2) over the fewer seeds
    d, se, n = findings._difference({0: 1.0, 1: 2.0, 2: 3.0}, {3: 1.0, 4: 1.5})
    assert (d, se, n) == pytest.approx((0.75, math.hypot(1 / math.sqrt(3), math.sqrt(0.125) / math.sqrt(2)), 2))


def test_the_seeds_that_would_resolve_a_difference_meet_the_marginal_rule_there():
    for d, se, n in ((0.5, 0.3, 3), (1.0, 0.45, 2), (0.01, 0.012, 3), (2.0, 0.9, 4)):
        m = findings._seeds_needed(d, se, n)
        at = se * math.sqrt(n / m)  # the s.e. at m seeds
        assert abs(d) > 2 * at and findings._marginal(d, at, m) == ""  # counts, not marginal
        before = se * math.sqrt(n / (m - 1))
        assert m - 1 == n or abs(d) <= 2 * before or findings._marginal(d, before, m - 1) != ""


def test_linear_connectivity_needs_a_small_sgd_momentum_barrier_and_large_adamw_ones():
    small, large = [0.01, 0.0, 0.02], [1.0, 1.2, 0.9]
    base = {("sgd", "sgd"): [0.2, 0.3, 0.4], ("momentum", "momentum"): [0.2, 0.3, 0.4],
            ("adamw", "adamw"): [0.2, 0.3, 0.4]}
    barriers = {("sgd", "momentum"): small, ("momentum", "adamw"): large, ("adamw", "sgd"): large, **base}
    verdict, evidence, settle = findings.claim_linear(_jobs(barriers=barriers))
    assert verdict == "supported" and "sgd-momentum barrier" in evidence and settle == []
    # 1.0333 - 0.5 x 0.3, s.e. hypot(0.1528, 0.5 x 0.1) / sqrt(3) = 0.0928: 9.5 s.e., beyond t(2 df)
    assert "sgd-adamw barrier minus 0.5 x sgd-sgd baseline: +0.883 ± 0.093 (s.e.)" in evidence
    # 0.39 above sgd-momentum at s.e. 0.113: beyond 2 s.e., inside t(2 df) = 4.3 s.e.
    wide = {**barriers, ("momentum", "adamw"): [0.2, 0.4, 0.6]}
    verdict, evidence, settle = findings.claim_linear(_jobs(barriers=wide))
    assert verdict == "supported"
    # (paired: per seed 0.19, 0.4, 0.58, s.e. 0.113)
    assert "more seeds: momentum-adamw vs sgd-momentum barrier is marginal: 3.5 s.e., below t = 4.3 (2 df)" in settle
    # and 0.25 above half its baseline at s.e. hypot(0.2, 0.05) / sqrt(3) = 0.119: 2.1 s.e., large but marginal
    assert "momentum-adamw barrier minus 0.5 x momentum-momentum baseline: +0.25 ± 0.12 (s.e.), large, " \
           "marginal: 2.1 s.e." in evidence
    assert "more seeds: momentum-adamw barrier minus 0.5 x momentum-momentum baseline: +0.25 ± 0.12 (s.e.) " \
           "is marginal: 2.1 s.e., below t = 4.3 (2 df)" in settle
    barriers[("adamw", "sgd")] = small
    assert findings.claim_linear(_jobs(barriers=barriers))[0] == "contradicted"


def test_a_large_barrier_is_judged_against_the_cross_seed_baseline():
    small, mid = [0.01, 0.0, 0.02], [0.2, 0.25, 0.3]
    pairs = {("sgd", "momentum"): small, ("momentum", "adamw"): mid, ("adamw", "sgd"): mid}
    # no baseline: separated from sgd-momentum, but its size cannot be judged
    verdict, evidence, settle = findings.claim_linear(_jobs(barriers=pairs))
    assert verdict == "not resolved" and "Large" not in evidence
    assert "sgd-adamw: the cross-seed baseline sgd-sgd (n=0) and adamw-adamw (n=0) on >= 2 seed pairs, to " \
           "judge its size against" in settle
    # baselines of ~1: 0.25 is far below half of them, so the barrier is not large ...
    far = {("sgd", "sgd"): [0.9, 1.0, 1.1], ("momentum", "momentum"): [1.3, 1.4, 1.5]}
    verdict, evidence, settle = findings.claim_linear(_jobs(barriers={**pairs, **far}))
    # ... unless adamw's own baseline, still missing, were smaller
    assert verdict == "not resolved"
    assert "momentum-adamw barrier minus 0.5 x momentum-momentum baseline: -0.45 ± 0.041 (s.e.), not resolved" in evidence
    assert "sgd-adamw: the cross-seed baseline adamw-adamw (n=0) on >= 2 seed pairs, to judge its size against" in settle
    far[("adamw", "adamw")] = [1.9, 2.0, 2.1]
    verdict, evidence, _ = findings.claim_linear(_jobs(barriers={**pairs, **far}))
    assert verdict == "contradicted"
    assert "momentum-adamw barrier minus 0.5 x momentum-momentum baseline: -0.45 ± 0.041 (s.e.), not large" in evidence
    # one baseline suffices for "large": clearing its bar clears the smaller one's
    low = {("momentum", "momentum"): [0.1, 0.15, 0.2]}
    verdict, evidence, _ = findings.claim_linear(_jobs(barriers={**pairs, **low}))
    assert verdict == "not resolved"  # sgd-adamw has no baseline yet
    assert "momentum-adamw barrier minus 0.5 x momentum-momentum baseline: +0.175 ± 0.032 (s.e.), large" in evidence
    # the smaller of the two optimizers' baselines is the bar: sgd-sgd (0.4) for sgd-adamw
    near = {("sgd", "sgd"): [0.3, 0.4, 0.5], ("adamw", "adamw"): [2.0, 2.1, 2.2],
            ("momentum", "momentum"): [0.3, 0.4, 0.5]}
    verdict, evidence, _ = findings.claim_linear(_jobs(barriers={**pairs, **near}))
    assert "sgd-adamw barrier minus 0.5 x sgd-sgd baseline: +0.05 ± 0.041" in evidence
    assert verdict == "not resolved"  # 0.05 at s.e. 0.041 is within 2 s.e.
    # a baseline on one seed pair only has no spread: not enough to judge against
    one = {o: [1.0, None, None] for o in (("sgd", "sgd"), ("momentum", "momentum"), ("adamw", "adamw"))}
    jobs = _jobs(barriers={**pairs, **one})
    verdict, _, settle = findings.claim_linear(jobs)
    assert verdict == "not resolved"
    assert "momentum-adamw: the cross-seed baseline momentum-momentum (n=1) and adamw-adamw (n=1) on >= 2 " \
           "seed pairs, to judge its size against" in settle


def _id_result(searches, epochs=4):
    """An intrinsic_dim result from ``(d_int90 or None, d_below, stop reason at d_below)`` per
    projection seed (stop reason default ``plateau``): a failing run at d_below, a reaching one at
    d_int90."""
    per_seed, runs = [], []
    for seed, (d_int, d_below, *stop) in enumerate(searches):
        per_seed.append({"seed": seed, "d_int90": d_int, "d_below": d_below})
        runs.append({"d": d_below, "seed": seed, "test_acc": 0.4, "stop_reason": (stop or ["plateau"])[0]})
        if d_int is not None:
            runs.append({"d": d_int, "seed": seed, "test_acc": 0.6, "stop_reason": "target"})
    return {"per_seed": per_seed, "runs": runs, "target_acc": 0.5, "epochs": epochs}


def test_intrinsic_dimension_against_15_and_the_parameter_count():
    big = {o: [20_000, 25_000, 30_000] for o in OPTS}  # lower ends 16,000, 20,000, 24,000
    assert findings.claim_intrinsic(_jobs(dims=big, n_params=100_000))[0] == "supported"
    only_sgd = _jobs(dims=big, n_params=100_000)  # every optimizer trained, sgd alone probed
    for j in only_sgd:
        if j.optimizer != "sgd":
            j.probes.pop("intrinsic_dim", None)
    verdict, _, settle = findings.claim_intrinsic(only_sgd)
    assert verdict == "not resolved" and settle == ["probe=intrinsic_dim for momentum, adamw"]
    small = {o: [2_000, 2_500, 3_000] for o in OPTS}  # 2.5% of the parameters
    verdict, evidence, _ = findings.claim_intrinsic(_jobs(dims=small, n_params=100_000))
    assert verdict == "contradicted" and "2.50% of 100,000" in evidence
    # d_int90 is the bracket's upper end: 13,000 clears the 10,000 line by 2 s.e. (about 577),
    # its lower ends (10,400 ± 462 s.e.) do not, so the crossing could lie below the line
    near = _jobs(dims={o: [12_000, 13_000, 14_000] for o in OPTS}, n_params=100_000)
    verdict, evidence, settle = findings.claim_intrinsic(near)
    assert verdict == "not resolved" and "sgd: more projection seeds or trained seeds" in settle
    assert "sgd d_int90 13,000 ± 1,000 (n=3), 13.00% of 100,000 parameters, s.e. 577 over 3 models; " \
           "crossing above 10,400 ± 800 (n=3) (bracket lower ends, s.e. 462 over 3 models); " \
           "budget-bound: 0 of 3 searches at 4 epochs" in evidence


def _budget(jobs, opt, seeds=(0, 1, 2)):
    """Make the runs below d_int90 of ``opt``'s models use their whole budget."""
    for j in jobs:
        if j.optimizer == opt and j.seed in seeds and "intrinsic_dim" in j.probes:
            for r in j.probes["intrinsic_dim"]["result"]["runs"]:
                if r["stop_reason"] != "target":
                    r["stop_reason"] = "budget"


def test_a_budget_bound_search_bounds_the_intrinsic_dimension_only_from_above():
    big = {o: [20_000, 25_000, 30_000] for o in OPTS}
    jobs = _jobs(dims=big, n_params=100_000)
    _budget(jobs, "sgd", seeds=(1,))
    verdict, evidence, settle = findings.claim_intrinsic(jobs)
    # one search that ran out of budget below d_int90 is enough: a longer run might reach there
    assert verdict == "not resolved"
    assert settle == ["sgd: a subspace budget at which the runs just below d_int90 stop on their own "
                      "(probe.epochs above 4): they used all of theirs still below the target, so "
                      "d_int90 bounds the intrinsic dimension only from above"]
    assert "budget-bound: 1 of 3 searches at 4 epochs" in evidence
    for o in OPTS:
        _budget(jobs, o)
    assert findings.claim_intrinsic(jobs)[2] == [
        "sgd, momentum, adamw: a subspace budget at which the runs just below d_int90 stop on their own "
        "(probe.epochs above 4): they used all of theirs still below the target, so d_int90 bounds the "
        "intrinsic dimension only from above"]  # one item for every optimizer at one budget
    # upper ends below the line still contradict: a longer budget can only lower them
    small = _jobs(dims={o: [2_000, 2_500, 3_000] for o in OPTS}, n_params=100_000)
    for o in OPTS:
        _budget(small, o)
    assert findings.claim_intrinsic(small)[0] == "contradicted"
    # a model that missed the target at its budget bounds nothing from below
    missed = _jobs(dims={o: [0, 0] for o in OPTS}, n_params=100_000)
    for o in OPTS:
        for s in (0, 1):
            _miss(missed, o, s, 30_000, stop="budget")
    verdict, _, settle = findings.claim_intrinsic(missed)
    assert verdict == "not resolved" and settle[0].startswith("sgd, momentum, adamw: a subspace budget")


def test_the_intrinsic_dimension_margin_includes_the_projection_seed_spread():
    # two models per optimizer on the same grid point: no spread across models, while their
    # projection seeds' lower ends are 4,000 and 20,000 (and 20,000 where one missed the target)
    same = {o: [12_000, 12_000] for o in OPTS}
    jobs = _jobs(dims=same, n_params=100_000)
    assert findings.claim_intrinsic(jobs)[0] == "not resolved"  # lower ends 9,600: below the line
    jobs = _jobs(dims={o: [15_000, 15_000] for o in OPTS}, n_params=100_000)
    assert findings.claim_intrinsic(jobs)[0] == "supported"  # lower ends 12,000, s.e. 0
    _searches(jobs, [5_000, 25_000])
    # lower ends 4,000 and 20,000 (mean 12,000 per model, s.e. 0 over models) and 20,000 where
    # the third search missed: s.e. 3,373 over six searches, 12,000 - 2 x 3,373 < 10,000
    verdict, evidence, settle = findings.claim_intrinsic(jobs)
    assert verdict == "not resolved" and "sgd: every projection seed reaching the target" in settle[0]
    assert "crossing above 12,000 ± 0 (n=2) (bracket lower ends, s.e. 3,373 over 6 searches)" in evidence
    assert ("; 2 of 6 searches missed the target even at the largest d tried (20,000), so d_int90 "
            "and the lower ends average the others;") in evidence
    # lower ends 13,000 and 15,000 (and 15,000): 4,000 above the line at s.e. 422 over six
    # searches, beyond 2 s.e. but inside t with 1 df (two trained models, not six searches)
    _searches(jobs, [16_250, 18_750])
    verdict, _, settle = findings.claim_intrinsic(jobs)
    assert verdict == "supported"
    assert "more seeds: sgd bracket lower ends vs 10,000 is marginal: 9.5 s.e., below t = 12.7 (1 df)" in settle


def test_the_intrinsic_dimension_margin_keeps_the_larger_spread_across_models():
    # models 15,000 and 37,500 apart (lower ends 12,000 and 30,000, s.e. 9,000), searches alike
    jobs = _jobs(dims={o: [15_000, 37_500] for o in OPTS}, n_params=100_000)
    verdict, evidence, _ = findings.claim_intrinsic(jobs)
    assert verdict == "not resolved"  # 21,000 - 2 x 9,000 < 10,000
    assert "(bracket lower ends, s.e. 9,000 over 2 models)" in evidence


def _miss(jobs, opt, seed, d_max, stop="plateau"):
    """Make one model's search miss the target in every projection seed up to d_max."""
    for j in jobs:
        if j.optimizer == opt and j.seed == seed and "intrinsic_dim" in j.probes:
            j.probes["intrinsic_dim"]["scalars"].update(d_int90=None, reached_90=0.0, d_max=d_max)
            j.probes["intrinsic_dim"]["result"] = _id_result([(None, d_max, stop)])


def test_a_search_that_missed_the_target_bounds_the_intrinsic_dimension_from_below():
    jobs = _jobs(dims={o: [0, 0] for o in OPTS}, n_params=100_000)
    for o in OPTS:
        for s in (0, 1):
            _miss(jobs, o, s, 30_000)
    # every model above 30,000 (s.e. 0) >= 10% of 100,000: supported (a null d_int90 once read
    # as "not far from 15": contradicted)
    verdict, evidence, settle = findings.claim_intrinsic(jobs)
    assert verdict == "supported" and settle == []
    assert "sgd: 2 of 2 models missed the target (above 30,000, 30,000, the largest d tried); d_int90 " \
           "not reached; crossing above 30,000 ± 0 (n=2) (bracket lower ends, s.e. 0 over 2 models); " \
           "budget-bound: 0 of 2 searches at 4 epochs" in evidence
    # a bound goes through the same 2-s.e. rule as a value: one model, or two far apart, do not settle it
    one = [j for j in jobs if j.optimizer == "sgd" and j.seed == 0]
    assert findings.claim_intrinsic(one)[0] == "not resolved"
    measured = [j for j in _jobs(dims={o: [90_000] for o in OPTS}) if j.optimizer == "sgd"]
    assert findings.claim_intrinsic(measured)[::2] == ("not resolved", ["sgd: >= 2 trained seeds"])
    _miss(jobs, "sgd", 0, 20_000)
    _miss(jobs, "sgd", 1, 90_000)  # 55,000 - 2 x 35,000 < 10,000
    verdict, _, settle = findings.claim_intrinsic([j for j in jobs if j.optimizer == "sgd"])
    assert verdict == "not resolved"
    assert settle == ["sgd: every projection seed reaching the target (a larger probe.d_max or probe.epochs)"]
    # above 5,000 says nothing about the 10,000 line
    for s in (0, 1):
        _miss(jobs, "adamw", s, 5_000)
    verdict, _, settle = findings.claim_intrinsic([j for j in jobs if j.optimizer == "adamw"])
    assert verdict == "not resolved"
    assert settle == ["adamw: every projection seed reaching the target (a larger probe.d_max or probe.epochs)"]


def test_missed_searches_never_contradict_a_sizeable_intrinsic_dimension():
    small = {o: [2_000, 2_500, 3_000] for o in OPTS}  # 2.5% of the parameters: contradicted alone
    jobs = _jobs(dims=small, n_params=100_000)
    _miss(jobs, "sgd", 2, 9_000)  # one sgd model above 9,000
    verdict, evidence, settle = findings.claim_intrinsic(jobs)
    assert verdict == "contradicted"  # momentum and adamw still contradict it
    assert "sgd: 1 of 3 models missed the target (above 9,000, the largest d tried); d_int90 2,250 ± 350 " \
           "(n=2), 2.25% of 100,000 parameters, s.e. 250 over 2 models; crossing above 4,200 ± 4,200 (n=3)" in evidence
    only_sgd = [j for j in jobs if j.optimizer == "sgd"]
    verdict, _, settle = findings.claim_intrinsic(only_sgd)
    assert verdict == "not resolved" and "sgd: every projection seed reaching the target" in settle[0]
    # a model whose d_int90 averages only the seeds that reached it (the others lie higher)
    partial = [j for j in _jobs(dims=small, n_params=100_000) if j.optimizer == "sgd"]
    partial[0].probes["intrinsic_dim"]["scalars"]["reached_90"] = 0.5
    assert findings.claim_intrinsic(partial)[0] == "not resolved"
    assert findings.claim_intrinsic([j for j in _jobs(dims=small) if j.optimizer == "sgd"])[0] == "contradicted"


def test_one_model_with_two_intrinsic_dim_records_counts_once():
    import copy

    jobs = [j for j in _jobs(dims={o: [20_000, 25_000, 30_000] for o in OPTS}) if j.optimizer == "sgd"]
    missed = copy.deepcopy(jobs[0])
    missed.probes["intrinsic_dim"]["probe_key"] += "-small-d_max"
    missed.probes["intrinsic_dim"]["scalars"].update(d_int90=None, reached_90=0.0, d_max=5_000)
    _, evidence, _ = findings.claim_intrinsic([*jobs, missed])
    assert "sgd d_int90 25,000 ± 5,000 (n=3)" in evidence and "missed" not in evidence
    # a record with neither a value nor a bound (no d_max) is left out, not a crash
    bare = copy.deepcopy(missed)
    del bare.probes["intrinsic_dim"]["scalars"]["d_max"]
    assert findings.claim_intrinsic([bare]) == ("no data", "", ["probe=intrinsic_dim"])


def test_a_search_without_its_runs_cannot_support_the_claim():
    jobs = _jobs(dims={o: [20_000, 25_000, 30_000] for o in OPTS}, n_params=100_000)
    for j in jobs:
        if "intrinsic_dim" in j.probes:
            j.probes["intrinsic_dim"]["result"] = {}
    verdict, evidence, settle = findings.claim_intrinsic(jobs)
    assert verdict == "not resolved" and "crossing above" not in evidence
    assert settle[0] == "sgd: the searches' brackets (the result's per_seed and runs)"


def _searches(jobs, dims):
    """Give every intrinsic_dim record one search per value (lower end 0.8 of it), plus one that
    missed the target at the largest."""
    for j in jobs:
        if "intrinsic_dim" in j.probes:
            rec = j.probes["intrinsic_dim"]
            rec["result"] = _id_result([(d, round(0.8 * d)) for d in dims] + [(None, round(0.8 * max(dims)))])
            rec["scalars"]["d_int90"] = sum(dims) / len(dims)
            rec["scalars"]["reached_90"] = len(dims) / (len(dims) + 1)


def test_correlation_matches_numpy_and_claim_4_needs_enough_models():
    x, y = [1.0, 2.0, 4.0, 3.0, 5.0], [0.5, 0.4, 0.1, 0.3, 0.35]
    assert findings._r(x, y) == pytest.approx(np.corrcoef(x, y)[0, 1], rel=1e-12)
    ratio = {"sgd": [2.0, 2.1], "momentum": [1.5, 1.6], "adamw": [1.0, 1.1]}
    verdict, evidence, _ = findings.claim_noise(_jobs(ratio=ratio, acc={o: [0.5, 0.6] for o in OPTS}))
    assert verdict == "not resolved" and "too few models" in evidence


def _williams_rejections(n, r_ab, groups=1, reps=20_000):
    """Share of simulated data sets (a and b equally correlated with y: the null holds) in which
    |Williams' t| passes the threshold; with ``groups`` > 1 each group gets its own offsets and
    every variable is centred within its group, as the within-optimizer test does."""
    rng = np.random.default_rng(0)
    cov = np.array([[1, 0.5, 0.5], [0.5, 1, r_ab], [0.5, r_ab, 1]])
    z = rng.multivariate_normal(np.zeros(3), cov, size=(reps, n))
    if groups > 1:
        z = z + np.repeat(rng.normal(0, 3, size=(reps, groups, 3)), n // groups, axis=1)
        blocks = z.reshape(reps, groups, n // groups, 3)
        z = (blocks - blocks.mean(axis=2, keepdims=True)).reshape(reps, n, 3)
    hits = 0
    for sample in z:
        _, _, t, df = findings._williams(*sample.T.tolist(), spent=groups - 1)
        hits += abs(t) >= findings._t975(df)
    return hits / reps


@pytest.mark.parametrize("n, r_ab, groups, low, high", [
    (50, 0.5, 1, 0.045, 0.055), (20, 0.8, 1, 0.045, 0.062), (9, 0.8, 1, 0.03, 0.05), (9, 0.8, 3, 0.025, 0.05)])
def test_williams_t_holds_its_level(n, r_ab, groups, low, high):
    """Under the null the two-sided test rejects ~5% (measured: 5.0% at n = 50, 5.7% at 20; it is
    conservative at the study's 9 models, 3.8%, and 3.6% within 3 groups). 20,000 sets give a
    binomial s.e. of 0.15%. Treating the two correlations as independent (Fisher z, the rule it
    replaced) rejected 0.08% at n = 9, r_ab = 0.8: it could hardly ever find a difference."""
    assert low < _williams_rejections(n, r_ab, groups) < high


def test_williams_t_literal_value_and_orientation():
    # r12 = 0.6, r13 = 0.2, r23 = 0.5, n = 20: |R| = 0.47, mean 0.4,
    # t = 0.4 sqrt(19 x 1.5 / (2 x 19/17 x 0.47 + 0.16 x 0.125)) = 2.06382
    assert findings.williams_t(0.6, 0.2, 0.5, 20) == pytest.approx(2.06382, abs=1e-5)
    rng = np.random.default_rng(3)
    y, a, b = rng.normal(size=(3, 12)).tolist()
    a = [u + 0.8 * v for u, v in zip(a, y, strict=True)]
    b = [u - 0.3 * v for u, v in zip(b, y, strict=True)]  # negatively correlated with y
    r_a, r_b, t, df = findings._williams(y, a, b)
    assert r_a > 0 > r_b and df == 9
    assert t == pytest.approx(findings.williams_t(abs(r_a), abs(r_b), -findings._r(a, b), 12), rel=1e-12)
    # flipping either predictor's sign changes nothing: the test compares |r|
    assert findings._williams(y, [-v for v in a], b)[2] == pytest.approx(t, rel=1e-12)
    assert findings._williams(y, a, [-v for v in b])[2] == pytest.approx(t, rel=1e-12)
    assert findings._williams(y, b, a)[2] == pytest.approx(-t, rel=1e-12)


def test_claim_4_needs_the_pooled_and_within_optimizer_tests_to_agree():
    rng = np.random.default_rng(1)
    acc = {o: [0.6 + 0.05 * k + 0.01 * x for x in rng.normal(size=3)] for k, o in enumerate(OPTS)}
    both = {o: [10 * a + 0.002 * rng.normal() for a in acc[o]] for o in OPTS}  # tracks acc everywhere
    flat = {o: list(1 + 0.3 * rng.normal(size=3)) for o in OPTS}  # tracks nothing
    across = {o: list(100 + 50 * k + 5 * rng.normal(size=3)) for k, o in enumerate(OPTS)}  # the optimizer only
    values = lambda v: {o: dict(enumerate(x)) for o, x in v.items()}  # noqa: E731
    assert findings._predicts_better(values(both), values(flat), values(acc))[0] == "supported"
    assert findings._predicts_better(values(flat), values(both), values(acc))[0] == "contradicted"
    _, _, t, df = findings._williams(*([v[o][s] for o in OPTS for s in range(3)] for v in (acc, across, flat)))
    assert t > findings._t975(df)  # over all models 'across' wins: it separates the optimizers
    verdict, evidence, settle = findings._predicts_better(values(across), values(flat), values(acc))
    assert verdict == "not resolved" and "within optimizers, 9 models" in evidence and settle


def test_no_data_is_said_not_guessed():
    jobs = _jobs(acc={o: [0.5, 0.6] for o in OPTS})
    for _, check in findings.CLAIMS[1:]:
        assert check(jobs)[0] == "no data"
    text = findings.findings_section(jobs)
    assert text.startswith("## Findings") and text.count("\n| ") == 1 + len(findings.CLAIMS)


def test_findings_rows_keep_the_table_columns():
    """A '|' inside a cell would split a Markdown table row: every row has the header's 5 cells."""
    lam = {o: [100.0, 101.0, 102.0] for o in OPTS}
    low = {o: [-1.0, -1.1, -0.9] for o in OPTS}
    text = findings.findings_section(_jobs(lam=lam, lam_min=low))
    rows = [line for line in text.splitlines() if line.startswith("|")]
    assert len(rows) == 2 + len(findings.CLAIMS)
    assert all(row.count("|") == 6 for row in rows)


def test_marginal_notes_keep_the_findings_table_intact():
    acc = {"sgd": [0.66, 0.68, 0.70], "momentum": [0.50, 0.50, 0.50], "adamw": [0.63, 0.62, 0.61]}
    rows = [r for r in findings.findings_section(_jobs(acc=acc)).splitlines() if r.startswith("| 1 |")]
    assert "marginal" in rows[0] and rows[0].count("|") == 6


def test_curved_paths_are_judged_on_optimizer_pairs_with_the_cross_seed_baseline_beside():
    low, high = [0.0, 0.01, 0.0], [0.5, 0.6, 0.4]
    barriers = {("sgd", "momentum"): low, ("momentum", "adamw"): low, ("adamw", "sgd"): low,
                ("adamw", "adamw"): high}
    jobs = []
    for j in _jobs(barriers=barriers):
        rec = j.probes.get("interpolation")
        if rec:
            rec = {**rec, "probe": "autoneb", "scalars": {"barrier": rec["scalars"]["barrier"]}}
            jobs.append(Job(j.path, j.summary, {"autoneb": rec}))
    verdict, evidence, settle = findings.claim_curved(jobs)
    # the cross-seed pair does not enter the verdict, but it is shown
    assert verdict == "supported" and not settle
    assert "Cross-seed baseline (same optimizer, different seeds, so different initialisations; the " \
           "optimizer pairs share theirs): adamw-adamw 0.5" in evidence
    # a pair with one seed cannot be judged: said so
    one = [j for j in jobs if not (j.seed > 0 and j.optimizer == "momentum")]
    verdict, _, settle = findings.claim_curved(one)
    assert verdict == "not resolved" and settle == ["momentum-adamw: >= 2 seeds (n=1)"]
    # its barrier is not claim 5's (Entezari's, above the chord): the definition is stated
    assert "(barrier here: max loss along the path minus the larger endpoint loss)" in evidence
