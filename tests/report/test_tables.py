"""The report's table helpers, against literal expected strings and values."""

from __future__ import annotations

import math

from losslands.report.tables import (
    epochs_to_fraction,
    fmt,
    fmt_values,
    group_scalars,
    markdown_table,
    scalar_value,
)


def test_fmt_literals():
    assert fmt(12.0, 2.8284, 2) == "12 ± 2.8 (n=2)"
    assert fmt(3.0, 0.0, 1) == "3 (n=1)"
    assert fmt(123456.0, 0.01234, 3) == "123,500 ± 0.012 (n=3)"
    assert fmt(34741.0, 6704.8, 2) == "34,740 ± 6,700 (n=2)"
    assert fmt(9999.6, 1234.0, 2) == "10,000 ± 1,200 (n=2)"
    assert fmt(-183242.0, 0.0, 2) == "-183,200 ± 0 (n=2)"
    assert fmt(936.84, 105.3, 3) == "936.8 ± 110 (n=3)"
    assert fmt(2.5e16, 1.0, 2) == "2.5e+16 ± 1 (n=2)"
    assert fmt(999.96, 99.96, 2) == "1,000 ± 100 (n=2)" and fmt(-999.96, 1.0, 2) == "-1,000 ± 1 (n=2)"
    assert fmt(999.94, 9.994, 2) == "999.9 ± 10 (n=2)"
    assert fmt(0.012345, 99.6, 2) == "0.01235 ± 100 (n=2)" and fmt(1.5, 0.00012, 2) == "1.5 ± 0.00012 (n=2)"
    assert fmt(math.nan, math.nan, 0) == "–"
    assert fmt(1.0, 0.0, 0) == "–"
    assert fmt(math.nan, 0.0, 2) == "–"


def test_fmt_values_literals():
    assert fmt_values([1.0, 3.0]) == "2 ± 1.4 (n=2)"
    assert fmt_values([5.0]) == "5 (n=1)"
    assert fmt_values([1.0, 3.0, math.inf]) == "2 ± 1.4 (n=2 of 3, 1 not finite)"
    assert fmt_values([None, 4.0]) == "4 (n=1 of 2, 1 missing)"
    assert fmt_values([30000.0, 39482.0, None]) == "34,740 ± 6,700 (n=2 of 3, 1 missing)"
    # a null (NaN) is counted under its reason, an infinity as not finite, an absent seed as missing
    assert fmt_values([math.nan, 4.0, None], null="not reached") == "4 (n=1 of 3, 1 not reached, 1 missing)"
    assert fmt_values([math.nan, math.inf, 2.0, 4.0]) == "3 ± 1.4 (n=2 of 4, 2 not finite)"
    assert fmt_values([math.nan, math.nan], null="not reached") == "– (n=0 of 2, 2 not reached)"


def test_markdown_table_names_each_metrics_null_reason():
    groups = {"sgd": {"d_int90": [math.nan, 3.0], "x": [math.nan, 1.0]}}
    table = markdown_table(groups, ["d_int90", "x"], nulls={"d_int90": "not reached"})
    assert table.splitlines()[-1] == "| sgd | 3 (n=1 of 2, 1 not reached) | 1 (n=1 of 2, 1 not finite) |"


def test_scalar_value():
    values = {"a": 2, "nan": None, "inf": "inf", "ninf": "-inf", "upper": "INF", "word": "abc"}
    assert scalar_value(values, "a") == 2.0 and isinstance(scalar_value(values, "a"), float)
    assert math.isnan(scalar_value(values, "nan"))
    assert scalar_value(values, "inf") == math.inf
    assert scalar_value(values, "ninf") == -math.inf
    assert scalar_value(values, "upper") == math.inf
    assert math.isnan(scalar_value(values, "word"))
    assert scalar_value(values, "absent") is None


def test_group_scalars_keeps_every_seed():
    records = [
        {"optimizer": "sgd", "status": "completed", "scalars": {"x": 1.0, "y": None, "flag": True}},
        {"optimizer": "sgd", "status": "completed", "scalars": {"x": "-inf", "name": "abc", "z": "NaN"}},
        {"optimizer": "sgd", "status": "failed", "scalars": {"x": 7.0}},
        {"result": {"optimizer": "adamw"}, "scalars": {"x": 2.0}},
        {"scalars": {"x": 3.0}},
    ]
    groups = group_scalars(records)
    assert set(groups) == {"sgd", "adamw", "?"}
    assert set(groups["sgd"]) == {"x", "y", "z"}  # numbers, null, "inf" and "nan" only
    assert math.isnan(groups["sgd"]["z"][1])
    x = groups["sgd"]["x"]
    assert x[0] == 1.0 and x[1] == -math.inf and x[2] is None
    y = groups["sgd"]["y"]
    assert math.isnan(y[0]) and y[1] is None and y[2] is None
    assert groups["adamw"] == {"x": [2.0], "y": [None], "z": [None]} and groups["?"]["x"] == [3.0]
    assert groups["sgd"]["missing"] == []  # nested defaultdicts: an unknown metric has no values


def test_markdown_table_literal():
    groups = {"adamw": {"x": [1.0, 3.0]}, "sgd": {"x": [5.0], "y": [None, 2.0]}, "zeta": {"x": [0.5]}}
    text = markdown_table(groups, ["x", "y", "z"], order=["sgd", "adamw"])
    assert text == (
        "| optimizer | x | y |\n"
        "|---|---|---|\n"
        "| sgd | 5 (n=1) | 2 (n=1 of 2, 1 missing) |\n"
        "| adamw | 2 ± 1.4 (n=2) | – |\n"
        "| zeta | 0.5 (n=1) | – |\n"
    )
    assert markdown_table(groups, ["x"], label="pair").startswith("| pair | x |\n")
    assert markdown_table({}, ["x"]) == "_no results_\n"
    assert markdown_table(groups, ["z"]) == "_no results_\n"


def test_epochs_to_fraction_uses_the_final_value():
    history = [{"epoch": 1, "val/acc": 0.3}, {"epoch": 2, "val/acc": 0.5}, {"epoch": 3, "val/acc": None},
               {"epoch": 4, "val/acc": 0.6}, {"epoch": 5, "val/acc": 1.0}]
    assert epochs_to_fraction(history) == 5  # 0.9 * the final 1.0: only epoch 5 reaches it
    assert epochs_to_fraction(history, fraction=0.5) == 2
    assert epochs_to_fraction(history, fraction=0.3) == 1
    assert epochs_to_fraction([{"epoch": 1, "loss": 2.0}, {"epoch": 2, "loss": 1.0}], key="loss") == 1
    assert epochs_to_fraction([{"epoch": 1}]) is None
