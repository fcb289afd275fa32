"""The published study (results/seed_study_cpu) regenerates from its committed JSONs."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from losslands.report import write_report

PUBLISHED = Path(__file__).resolve().parents[2] / "results" / "seed_study_cpu"


@pytest.mark.skipif(not (PUBLISHED / "REPORT.md").exists(), reason="no published study in this checkout")
def test_published_report_regenerates_from_the_committed_jsons(tmp_path):
    copy = tmp_path / PUBLISHED.name
    # only what git keeps: the JSONs and configs, none of the report's own outputs
    shutil.copytree(PUBLISHED, copy, ignore=shutil.ignore_patterns(
        "REPORT.md", "results.csv", "figures", "wandb", "csv", "*.log", "*.png", "*.partial.json", "hydra.yaml"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unfinished study lists its missing jobs, as published
        report = write_report(copy)
    assert report.read_text() == (PUBLISHED / "REPORT.md").read_text()
    assert (copy / "results.csv").read_text() == (PUBLISHED / "results.csv").read_text()
    assert sorted(p.name for p in (copy / "figures").iterdir()) == sorted(
        p.name for p in (PUBLISHED / "figures").iterdir())
