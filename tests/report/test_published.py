"""The published study (results/seed_study_cpu) regenerates from its committed JSONs."""

from __future__ import annotations

import shutil
import subprocess
import warnings
from pathlib import Path

import pytest

from losslands.report import write_report

PUBLISHED = Path(__file__).resolve().parents[2] / "results" / "seed_study_cpu"


@pytest.mark.skipif(not (PUBLISHED / "REPORT.md").exists(), reason="no published study in this checkout")
def test_published_report_regenerates_from_the_committed_jsons(tmp_path):
    copy = tmp_path / PUBLISHED.name
    tracked = _tracked(PUBLISHED)
    if tracked is None:  # not a git checkout: what .gitignore keeps, none of the report's outputs
        shutil.copytree(PUBLISHED, copy, ignore=shutil.ignore_patterns(
            "REPORT.md", "results.csv", "figures", "wandb", "csv", "*.log", "*.png", "*.partial.json",
            "hydra.yaml"))
    else:  # exactly the committed inputs: a study running in this checkout adds folders git lacks
        for rel in tracked:
            if rel.parts[0] in ("REPORT.md", "results.csv", "figures"):
                continue
            (copy / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(PUBLISHED / rel, copy / rel)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unfinished study lists its missing jobs, as published
        report = write_report(copy)
    assert report.read_text() == (PUBLISHED / "REPORT.md").read_text()
    assert (copy / "results.csv").read_text() == (PUBLISHED / "results.csv").read_text()
    assert sorted(p.name for p in (copy / "figures").iterdir()) == sorted(
        p.name for p in (PUBLISHED / "figures").iterdir())


def _tracked(folder: Path) -> list[Path] | None:
    """Files under ``folder`` that git tracks (relative), or None outside a git checkout."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "."], cwd=folder, capture_output=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    files = [Path(f) for f in out.stdout.decode().split("\0") if f]
    return files or None
