"""The report aggregates exactly what the jobs wrote."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest

from losslands.io import write_json
from losslands.report import load_sweep, write_report
from losslands.report.tables import epochs_to_fraction, fmt, mean_std


def _fake_sweep(root, values):
    """Jobs with known numbers: values[(opt, seed)] = (val_acc, lambda_max)."""
    for i, ((opt, seed), (acc, lam)) in enumerate(sorted(values.items())):
        for probe in ("eval", "lanczos"):
            job = root / f"{i}_{opt}-s{seed}-{probe}"
            history = [{"epoch": e, "val/acc": acc * e / 3, "train/acc": acc, "val/loss": 1.0, "train/loss": 1.0} for e in (1, 2, 3)]
            write_json(job / "train_summary.json", {
                "status": "completed", "hash": f"h{opt}{seed}", "config": {"optimizer": {"name": opt}, "seed": seed},
                "final": history[-1] | {}, "history": history, "train_seconds": 10.0,
            })
            scalars = {"test_acc": acc} if probe == "eval" else {"lambda_max": lam, "lambda_min": -lam / 10}
            write_json(job / "probes" / f"{probe}.json", {
                "probe": probe, "status": "completed", "optimizer": opt, "seed": seed, "probe_key": f"{opt}{seed}{probe}",
                "scalars": scalars, "result": {}, "seconds": 1.0,
            })


def test_mean_std_matches_numpy():
    xs = [1.0, 2.5, 4.0]
    m, sd, n = mean_std(xs + [float("nan"), None])
    assert n == 3 and m == pytest.approx(np.mean(xs)) and sd == pytest.approx(np.std(xs, ddof=1))
    assert mean_std([])[2] == 0 and fmt(*mean_std([])) == "–"
    assert mean_std([3.0]) == (3.0, 0.0, 1)


def test_epochs_to_fraction():
    h = [{"epoch": 1, "val/acc": 0.5}, {"epoch": 2, "val/acc": 0.85}, {"epoch": 3, "val/acc": 0.9}]
    assert epochs_to_fraction(h) == 2  # 0.85 >= 0.9 * 0.9
    assert epochs_to_fraction([]) is None


def test_report_tables_and_csv(tmp_path):
    values = {("sgd", 0): (0.5, 10.0), ("sgd", 1): (0.6, 14.0), ("adamw", 0): (0.7, 30.0), ("adamw", 1): (0.72, 50.0)}
    _fake_sweep(tmp_path, values)
    jobs = load_sweep(tmp_path)
    assert len(jobs) == 8
    report = write_report(tmp_path)
    text = report.read_text()
    for opt in ("sgd", "adamw"):
        lams = [lam for (o, _), (_, lam) in values.items() if o == opt]
        assert fmt(*mean_std(lams)) in text  # the spectrum cell for this optimizer
        accs = [acc for (o, _), (acc, _) in values.items() if o == opt]
        assert fmt(*mean_std(accs)) in text  # val/acc in the training table
    assert "## Definitions" in text and "training_curves.png" in text
    assert (tmp_path / "figures" / "training_curves.png").stat().st_size > 1000
    with open(tmp_path / "results.csv") as f:
        rows = list(csv.DictReader(f))
    lam_rows = [r for r in rows if r["probe"] == "lanczos" and r["metric"] == "lambda_max"]
    assert sorted(float(r["value"]) for r in lam_rows) == sorted(lam for _, lam in values.values())
    assert all(math.isfinite(float(r["value"])) for r in lam_rows)


def _failed_section(text: str) -> list[list[str]]:
    """The rows (job, file, status, error) of REPORT.md's "Failed or unreadable" table."""
    if "## Failed or unreadable" not in text:
        return []
    section = text.split("## Failed or unreadable", 1)[1].split("\n## ", 1)[0]
    rows = [line.strip("|").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return [[c.strip() for c in r] for r in rows[1:]]  # without the header


def _csv_rows(sweep):
    with open(sweep / "results.csv") as f:
        return list(csv.DictReader(f))


TRACEBACK = """Traceback (most recent call last):
  File "runner.py", line 3, in run
    result = mod.run(ctx, cfg)
ValueError: probe.n_samples=9000 exceeds the 5000 probe images
(second line of the message)
"""


def _final(job):
    """The final metrics of a job's training (another job of the same training reports the same)."""
    return json.loads((job / "train_summary.json").read_text())["final"]


def test_a_not_reproduced_message_shows_just_enough_digits_to_tell_the_numbers_apart():
    from losslands.report.load import _distinct
    assert _distinct(0.5801200270652771, 0.5799800157546997) == ("0.58012", "0.57998")
    assert _distinct(1.07234012, 1.07234087) == ("1.07234", "1.072341")  # 6 digits would tie
    assert _distinct(None, 0.5) == ("None", "0.5")


def test_a_training_that_ended_differently_in_two_folders_is_listed(tmp_path):
    # the same training key in two folders (one from another machine), different weights
    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0), ("sgd", 1): (0.6, 12.0)})
    again = tmp_path / "9_sgd-s0-noise"
    write_json(again / "train_summary.json",
               {"status": "completed", "hash": "hsgd0", "config": {"optimizer": {"name": "sgd"}, "seed": 0},
                "final": _final(tmp_path / "0_sgd-s0-eval") | {"val/acc": 0.51}})
    with pytest.warns(UserWarning, match="1 jobs or files"):
        text = write_report(tmp_path).read_text()
    [row] = _failed_section(text)
    assert row[:3] == ["9_sgd-s0-noise", "train_summary.json", "not reproduced"]
    assert row[3].startswith("training hsgd0 ended at val/acc 0.51 here but 0.5 in 0_sgd-s0-eval")
    # the same final metrics everywhere: nothing listed
    write_json(again / "train_summary.json",
               {"status": "completed", "hash": "hsgd0", "config": {"optimizer": {"name": "sgd"}, "seed": 0},
                "final": _final(tmp_path / "0_sgd-s0-eval")})
    assert "## Failed or unreadable" not in write_report(tmp_path).read_text()


def test_coverage_names_a_result_from_weights_that_were_not_reproduced_and_prices_its_redo(tmp_path):
    from losslands.report.write import coverage_table

    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0), ("sgd", 1): (0.6, 12.0)})
    stale = tmp_path / "9_sgd-s0-surface"  # sgd seed 0's surface, from other weights
    write_json(stale / "train_summary.json",
               {"status": "completed", "hash": "hsgd0", "config": {"optimizer": {"name": "sgd"}, "seed": 0},
                "final": _final(tmp_path / "0_sgd-s0-eval") | {"val/acc": 0.51}})
    write_json(stale / "probes" / "surface.json", {
        "probe": "surface", "status": "completed", "optimizer": "sgd", "seed": 0, "probe_key": "s",
        "scalars": {"loss_center": 1.0}, "result": {}, "seconds": 60.0})
    with pytest.warns(UserWarning, match="1 jobs or files"):
        text = write_report(tmp_path).read_text()
    assert "| surface | 1/2 (no seed 1; seed 0 not reproduced) |" in text
    assert "To finish: 2 jobs" in text and "surface 2 x 1.0 min" in text
    jobs = load_sweep(tmp_path)
    assert "| eval | 2/2 |" in coverage_table(jobs)  # nothing stale: nothing to redo
    assert "| eval | 2/2 (seed 0 not reproduced) |" in coverage_table(jobs, frozenset({tmp_path / "0_sgd-s0-eval"}))


def test_failed_probe_is_listed(tmp_path):
    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0)})
    write_json(tmp_path / "9_sgd-s0-noise" / "train_summary.json",
               {"status": "completed", "hash": "hsgd0", "config": {"optimizer": {"name": "sgd"}, "seed": 0},
                "final": _final(tmp_path / "0_sgd-s0-eval")})
    write_json(tmp_path / "9_sgd-s0-noise" / "probes" / "noise.json",
               {"probe": "noise", "status": "failed", "optimizer": "sgd", "seed": 0, "error": TRACEBACK})
    write_json(tmp_path / "9_sgd-s1-noise" / "train_summary.json",
               {"status": "completed", "hash": "hsgd1", "config": {"optimizer": {"name": "sgd"}, "seed": 1}, "final": {}})
    write_json(tmp_path / "9_sgd-s1-noise" / "probes" / "noise.json",
               {"probe": "noise", "status": "completed", "optimizer": "sgd", "seed": 1, "scalars": {"ratio": 2.0}})
    with pytest.warns(UserWarning, match="1 jobs or files"):
        text = write_report(tmp_path).read_text()
    assert _failed_section(text) == [["9_sgd-s0-noise", "probes/noise.json", "failed",
                                      "ValueError: probe.n_samples=9000 exceeds the 5000 probe images"]]
    rows = [r for r in _csv_rows(tmp_path) if r["job"] == "9_sgd-s0-noise" and r["probe"] == "noise"]
    assert [r["status"] for r in rows] == ["failed"]
    assert rows[0]["error"] == "probes/noise.json: ValueError: probe.n_samples=9000 exceeds the 5000 probe images"
    # the failed seed is a missing value of the noise table, not silently dropped
    assert "| sgd | 2 (n=1 of 2, 1 missing) |" in text.split("probe=noise", 1)[1]


def test_diverged_job_is_listed(tmp_path):
    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0), ("sgd", 1): (0.6, 14.0)})
    error = "training loss is nan at epoch 0, step 3: lower optimizer.lr or check the data"
    write_json(tmp_path / "9_sgd-s2-eval" / "train_summary.json", {
        "status": "diverged", "error": error, "hash": "hsgd2", "config": {"optimizer": {"name": "sgd"}, "seed": 2},
        "final": {}, "history": []})
    with pytest.warns(UserWarning):
        text = write_report(tmp_path).read_text()
    assert ["9_sgd-s2-eval", "train_summary.json", "diverged", error] in _failed_section(text)
    assert "(n=2 of 3, 1 missing)" in text.split("## Training", 1)[1]  # the training table
    rows = [r for r in _csv_rows(tmp_path) if r["job"] == "9_sgd-s2-eval"]
    assert [r["status"] for r in rows] == ["diverged"] and error in rows[0]["error"]
    assert {r["status"] for r in _csv_rows(tmp_path) if r["job"] != "9_sgd-s2-eval"} == {"completed"}


def test_truncated_probe_json_is_listed_and_fails_strict(tmp_path, capsys):
    from losslands.report.__main__ import main

    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0), ("adamw", 0): (0.7, 30.0)})
    bad = next(tmp_path.glob("*adamw-s0-lanczos/probes/lanczos.json"))
    bad.write_text(bad.read_text()[:50])
    with pytest.warns(UserWarning):
        main([str(tmp_path)])  # without --strict: exit status 0, the report lists the file
    [row] = _failed_section((tmp_path / "REPORT.md").read_text())
    assert row[:3] == [bad.parent.parent.name, "probes/lanczos.json", "unreadable"]
    assert row[3].startswith("JSONDecodeError: ")
    with pytest.raises(SystemExit) as exit_:
        main([str(tmp_path), "--strict"])
    assert exit_.value.code == 1
    assert "1 jobs or files failed or could not be read" in capsys.readouterr().err
    assert "## Failed or unreadable" in (tmp_path / "REPORT.md").read_text()  # written all the same


def test_strict_passes_on_a_complete_sweep(tmp_path):
    from losslands.report.__main__ import main

    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0)})
    main([str(tmp_path), "--strict"])
    assert "Failed or unreadable" not in (tmp_path / "REPORT.md").read_text()


@pytest.mark.parametrize("file, content, error", [
    ("train_summary.json", {"status": "completed", "final": {}}, "no config.optimizer.name"),
    ("train_summary.json", [1, 2], "a JSON list, not an object"),
    ("train_summary.json", {"config": {"optimizer": {"name": "sgd"}, "seed": "x"}}, "config.seed is 'x'"),
    ("probes/lanczos.json", ["not", "a", "record"], "a JSON list, not an object"),
    ("probes/lanczos.json", {"probe": "lanczos", "status": "completed", "scalars": [1.0]}, "scalars is a list"),
    ("probes/lanczos.json", {"probe": "lanczos", "scalars": {}}, "no status"),
])
def test_wrong_shaped_files_are_listed(tmp_path, file, content, error):
    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0), ("sgd", 1): (0.6, 14.0)})
    job = next(tmp_path.glob("*sgd-s1-lanczos"))
    write_json(job / file, content)
    with pytest.warns(UserWarning):
        text = write_report(tmp_path).read_text()
    [row] = _failed_section(text)
    assert row[:3] == [job.name, file, "wrong shape"] and error in row[3]


def test_jobs_without_results_are_listed(tmp_path):
    """A job that stopped before writing its summary, and one whose probe left no result, are
    named from the job's Hydra config."""
    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0)})
    killed = tmp_path / "5_momentum-s3-noise"
    (killed / ".hydra").mkdir(parents=True)
    (killed / ".hydra" / "config.yaml").write_text(
        "optimizer:\n  name: momentum\nseed: 3\nprobe:\n  name: noise\ndata:\n  root: ${dirs.data}\n")
    no_probe = tmp_path / "6_sgd-s0-curve"
    (no_probe / ".hydra").mkdir(parents=True)
    (no_probe / ".hydra" / "config.yaml").write_text("optimizer:\n  name: sgd\nseed: 0\nprobe:\n  name: curve\n")
    write_json(no_probe / "train_summary.json",
               {"status": "completed", "hash": "hsgd0", "config": {"optimizer": {"name": "sgd"}, "seed": 0},
                "final": _final(tmp_path / "0_sgd-s0-eval")})
    write_json(no_probe / "probes" / "curve.partial.json", {"pieces": {}})
    with pytest.warns(UserWarning):
        text = write_report(tmp_path).read_text()
    section = _failed_section(text)
    assert [r[:3] for r in section] == [["5_momentum-s3-noise", "train_summary.json", "missing"],
                                        ["6_sgd-s0-curve", "probes/curve.json", "missing"]]
    assert "partial" in section[1][3]
    rows = {r["job"]: r for r in _csv_rows(tmp_path) if r["status"] == "missing"}
    assert (rows["5_momentum-s3-noise"]["optimizer"], rows["5_momentum-s3-noise"]["seed"]) == ("momentum", "3")


def test_sweep_below_a_folder_named_cache_is_found(tmp_path):
    """Jobs are found wherever the sweep lives; training-cache entries inside it are not jobs."""
    sweep = tmp_path / "cache" / "sweep"
    _fake_sweep(sweep, {("sgd", 0): (0.5, 10.0), ("adamw", 0): (0.7, 30.0)})
    entry = sweep / "cache" / "0123456789abcdef"  # as training/cache.py lays it out
    write_json(entry / "train_summary.json", {"status": "completed", "hash": "0123456789abcdef",
                                              "config": {"optimizer": {"name": "sgd"}, "seed": 5}, "final": {}})
    (entry / "model.pt").write_bytes(b"weights")
    assert len(load_sweep(sweep)) == 4
    text = write_report(sweep).read_text()
    assert "4 jobs" in text and "Failed or unreadable" not in text


def test_non_finite_values_are_counted_not_dropped(tmp_path):
    values = {("sgd", 0): (0.5, 10.0), ("sgd", 1): (0.6, 14.0), ("sgd", 2): (0.7, 12.0), ("sgd", 3): (0.7, 12.0)}
    _fake_sweep(tmp_path, values)
    for seed, bad in ((2, float("nan")), (3, float("inf"))):
        path = next(tmp_path.glob(f"*sgd-s{seed}-lanczos/probes/lanczos.json"))
        rec = json.loads(path.read_text())
        rec["scalars"]["lambda_max"] = bad
        write_json(path, rec)  # NaN is written as null, inf as "inf" (standard JSON)
    text = write_report(tmp_path).read_text()
    # lambda_max is null where no subset certified it (its Scalar's null reason); inf is not finite
    assert fmt(*mean_std([10.0, 14.0]))[: -len("(n=2)")] + "(n=2 of 4, 1 not certified, 1 not finite)" in text
    assert "Failed or unreadable" not in text


def test_fmt_values_says_what_the_mean_leaves_out():
    from losslands.report.tables import fmt_values

    assert fmt_values([1.0, 2.0]) == fmt(*mean_std([1.0, 2.0]))
    assert fmt_values([1.0, 3.0, float("nan")]) == "2 ± 1.4 (n=2 of 3, 1 not finite)"
    assert fmt_values([1.0, None, float("-inf")]) == "1 (n=1 of 3, 1 not finite, 1 missing)"
    assert fmt_values([None, None]) == "– (n=0 of 2, 2 missing)"
    assert fmt_values([]) == "–"


def test_missing_sweep_dir_names_the_fix(tmp_path):
    with pytest.raises(FileNotFoundError, match="multirun"):
        write_report(tmp_path / "nope")


def test_curvature_during_training_figure(tmp_path):
    """Jobs trained with callbacks=curvature carry probe_history; the report plots it per optimizer."""
    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0), ("adamw", 0): (0.7, 30.0)})
    assert not (write_report(tmp_path).parent / "figures" / "curvature_during_training.png").exists()
    for summary in tmp_path.glob("*/train_summary.json"):
        data = json.loads(summary.read_text())
        data["probe_history"] = [{"epoch": e, "lambda_max": 10.0 * e, "trace": 100.0 * e, "noise_ratio": 1.0} for e in (1, 2, 3)]
        write_json(summary, data)
    text = write_report(tmp_path).read_text()
    assert "curvature_during_training.png" in text
    assert (tmp_path / "figures" / "curvature_during_training.png").stat().st_size > 1000


def test_diverged_cli_job_reaches_the_report(tmp_path):
    """A job whose training diverges records its summary in its folder; the report lists it."""
    from tests.conftest import TINY, run_cli

    r = run_cli(*TINY, "optimizer.lr=1e30", "hydra.run.dir=sweep/job", cwd=tmp_path, ok=False, timeout=300)
    assert r.returncode != 0
    with pytest.warns(UserWarning):
        text = write_report(tmp_path / "sweep").read_text()
    [row] = _failed_section(text)
    assert row[:3] == ["job", "train_summary.json", "diverged"]
    assert row[3].startswith("training loss is") and "optimizer.lr" in row[3]


def test_intrinsic_dimension_figure_marks_runs_that_reached_the_target():
    from losslands.report import figures
    from losslands.report.load import Job

    runs = [{"d": 10, "test_acc": 0.4, "stop_reason": "budget"}, {"d": 30, "test_acc": 0.6, "stop_reason": "target"},
            {"d": 20, "test_acc": 0.5, "stop_reason": "plateau"}]
    rec = {"probe": "intrinsic_dim", "status": "completed", "optimizer": "sgd", "seed": 0, "probe_key": "k",
           "scalars": {}, "result": {"runs": runs, "target_acc": 0.55, "d_int90": 30}}
    fig = figures.intrinsic_dimension([Job(None, {}, {"intrinsic_dim": rec})])
    lines = [ln for ln in fig.axes[0].get_lines() if ln.get_marker() == "o"]
    filled, hollow = (ln for ln in lines if ln.get_markerfacecolor() != "none"), (
        ln for ln in lines if ln.get_markerfacecolor() == "none")
    assert [list(ln.get_xdata()) for ln in filled] == [[30]]
    assert [list(ln.get_xdata()) for ln in hollow] == [[10, 20]]


def test_path_figures_name_pairs_as_the_tables_do_and_orient_the_paths():
    """A path run from AdamW to SGD is drawn as sgd-adamw (the tables' name) from the SGD end,
    and each pair of two optimizers has a colour of its own."""
    from losslands.report import figures
    from losslands.report.load import Job

    def rec(opt, pair, alphas, loss):
        return {"probe": "interpolation", "status": "completed", "optimizer": opt, "seed": 0, "probe_key": pair,
                "scalars": {}, "result": {"pair": pair, "alphas": alphas, "train_loss": loss, "test_acc": loss}}

    jobs = [Job(None, {}, {"interpolation": rec("adamw", "adamw-sgd", [0.0, 0.25, 1.0], [1.0, 2.0, 3.0])}),
            Job(None, {}, {"interpolation": rec("sgd", "sgd-momentum", [0.0, 0.5, 1.0], [4.0, 5.0, 6.0])})]
    fig = figures.interpolation_curves(jobs)
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines() if not ln.get_label().startswith("_")}
    assert set(lines) == {"sgd-adamw train (n=1)", "sgd-momentum train (n=1)"}
    flipped = lines["sgd-adamw train (n=1)"]
    assert list(flipped.get_xdata()) == [0.0, 0.75, 1.0] and list(flipped.get_ydata()) == [3.0, 2.0, 1.0]
    assert list(lines["sgd-momentum train (n=1)"].get_ydata()) == [4.0, 5.0, 6.0]
    assert flipped.get_color() != lines["sgd-momentum train (n=1)"].get_color()
    assert figures._pair_colors(["sgd-sgd", "sgd-adamw"]) == {"sgd-sgd": figures.COLORS["sgd"],
                                                              "sgd-adamw": figures.PAIR_COLORS["sgd-adamw"]}
    # the same pair run both ways on a grid not symmetric about 1/2: drawn on the first record's
    jobs.append(Job(None, {}, {"interpolation": rec("sgd", "sgd-adamw", [0.0, 0.5, 1.0], [3.0, 1.0, 1.0])}))
    fig = figures.interpolation_curves(jobs)
    [both] = [ln for ln in fig.axes[0].get_lines() if ln.get_label() == "sgd-adamw train (n=2)"]
    assert list(both.get_xdata()) == [0.0, 0.75, 1.0]
    assert list(both.get_ydata()) == pytest.approx([3.0, (2.0 + 1.0) / 2, 1.0])


def test_canonical_pair_orders_known_optimizers_first():
    from losslands.report.load import canonical_pair

    assert canonical_pair("adamw-sgd") == ("sgd-adamw", True)
    assert canonical_pair("sgd-momentum") == ("sgd-momentum", False)
    assert canonical_pair("lion-sgd") == ("sgd-lion", True) and canonical_pair("sgd-lion") == ("sgd-lion", False)
    assert canonical_pair("lion-adafactor") == ("adafactor-lion", True)
    assert canonical_pair("sgd") == ("sgd", False)


def test_cost_table_sums_wall_time_per_probe_and_training(tmp_path):
    from losslands.report.write import cost_table

    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0), ("sgd", 1): (0.6, 12.0), ("adamw", 0): (0.7, 20.0)})
    text = cost_table(load_sweep(tmp_path))
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    # three trainings of 10 s, three eval and three lanczos jobs of 1 s each
    assert rows["training"] == "| training | 3 | 0.5 min | 0.2 min |"
    assert rows["eval"] == "| eval | 3 | 0.1 min | 0.0 min |" and rows["lanczos"].startswith("| lanczos | 3 |")
    assert rows["all"] == f"| all | | {(30 + 6) / 3600:.2f} h | |"
    assert "other_seconds" in text


def test_coverage_says_which_seeds_each_probe_lacks(tmp_path):
    from losslands.report.write import coverage_table

    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0), ("sgd", 1): (0.6, 12.0), ("adamw", 0): (0.7, 20.0),
                           ("adamw", 1): (0.7, 21.0)})
    (tmp_path / "3_sgd-s1-lanczos" / "probes" / "lanczos.json").unlink()  # sgd seed 1 lacks lanczos
    for other in ("adamw", "sgd"):  # sgd seed 0 against adamw, and against sgd seed 1 (cross-seed)
        job = tmp_path / f"9_sgd-s0-interpolation-{other}"
        write_json(job / "train_summary.json", json.loads((tmp_path / "2_sgd-s0-eval" / "train_summary.json").read_text()))
        write_json(job / "probes" / "interpolation.json", {
            "probe": "interpolation", "status": "completed", "optimizer": "sgd", "seed": 0,
            "probe_key": f"i{other}", "scalars": {"barrier": 0.1}, "result": {"other": other}, "seconds": 1.0})
    rows = {line.split(" | ")[0].strip("| "): line for line in coverage_table(load_sweep(tmp_path)).splitlines()
            if line.startswith("|")}
    assert rows[""] == "| | sgd | adamw |"
    assert rows["training"] == "| training | 2/2 | 2/2 |" and rows["eval"] == "| eval | 2/2 | 2/2 |"
    assert rows["lanczos"] == "| lanczos | 1/2 (no seed 1) | 2/2 |"
    assert rows["interpolation"] == "| interpolation | 1/2 (no seed 1) | 0/2 (no seed 0, 1) |"
    assert rows["interpolation (cross-seed)"] == "| interpolation (cross-seed) | 1/2 (no seed 1) | 0/2 (no seed 0, 1) |"
    # the missing cells at the mean wall time of the finished jobs of their row (1 s each here)
    finish = [line for line in coverage_table(load_sweep(tmp_path)).splitlines() if line.startswith("To finish")]
    assert finish == ["To finish: 7 jobs, about 0 min on these machines at the mean wall time of the finished "
                      "jobs of each row (interpolation 3 x 0.0 min; interpolation (cross-seed) 3 x 0.0 min; "
                      "lanczos 1 x 0.0 min)."]


def test_to_finish_prices_missing_jobs_by_their_rows_mean():
    from losslands.report.write import _to_finish

    text = _to_finish({"intrinsic_dim": 6, "curve": 2, "new": 1},
                      {"intrinsic_dim": [1800.0, 2400.0], "curve": [60.0]})
    assert text == ("\nTo finish: 9 jobs, about 3.5 h plus the jobs of unknown cost on these machines at the "
                    "mean wall time of the finished jobs of each row (intrinsic_dim 6 x 35.0 min; curve 2 x "
                    "1.0 min; new 1 x unknown).\n")
    assert _to_finish({}, {}) == ""


def test_a_pairwise_probes_second_model_is_checked_against_its_own_jobs(tmp_path):
    _fake_sweep(tmp_path, {("sgd", 0): (0.5, 10.0), ("adamw", 0): (0.7, 30.0)})
    adamw = _final(tmp_path / "0_adamw-s0-eval")
    pair = tmp_path / "9_sgd-s0-interpolation"
    write_json(pair / "train_summary.json", json.loads((tmp_path / "1_sgd-s0-eval" / "train_summary.json").read_text()))

    def write_pair(partner_final):
        write_json(pair / "probes" / "interpolation.json", {
            "probe": "interpolation", "status": "completed", "optimizer": "sgd", "seed": 0,
            "probe_key": "pair", "scalars": {"barrier": 0.1}, "result": {"other": "adamw"},
            "others": [{"train_hash": "hadamw0", "final": partner_final}]})

    write_pair(adamw)
    assert "## Failed or unreadable" not in write_report(tmp_path).read_text()
    write_pair(adamw | {"val/acc": 0.71})
    with pytest.warns(UserWarning, match="1 jobs or files"):
        [row] = _failed_section(write_report(tmp_path).read_text())
    assert row[:3] == ["9_sgd-s0-interpolation", "probes/interpolation.json", "not reproduced"]
    assert adamw["val/acc"] == pytest.approx(0.7)  # stored as 0.6999999999999998, shown to 6 digits
    assert row[3].startswith("second model's training hadamw0 ended at val/acc 0.71 here but 0.7 "
                             "in 0_adamw-s0-eval")


def test_a_pair_is_named_in_the_report_order_whichever_job_ran_it():
    from losslands.report.write import _pair
    assert _pair({"optimizer": "adamw", "result": {"other": "sgd"}}) == "sgd-adamw"
    assert _pair({"optimizer": "sgd", "result": {"pair": "adamw-sgd"}}) == "sgd-adamw"
    assert _pair({"optimizer": "momentum", "result": {"other": "momentum"}}) == "momentum-momentum"
    assert _pair({"optimizer": "lion", "result": {"other": "sgd"}}) == "sgd-lion"  # unknown: after the known
    assert _pair({"optimizer": "sgd", "result": {}}) == ""


def test_log_axes_label_ticks_as_plain_numbers():
    """A narrow log axis labels minor ticks: 0.9, not 9e-01 or 9×10⁻¹."""
    from losslands.report import figures

    fig, axes = figures._panels(1)
    axes[0].plot([0, 1], [0.8, 1.2])
    axes[0].set_yscale("log")
    figures._done(fig, axes)
    fig.canvas.draw()
    labels = [t.get_text() for t in axes[0].get_yticklabels(minor=True) + axes[0].get_yticklabels()]
    assert "0.9" in labels and not any("e" in t or "times" in t for t in labels)
