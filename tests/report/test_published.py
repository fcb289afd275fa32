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
    copy = _from_git(PUBLISHED, tmp_path)
    if copy is None or not (copy / "REPORT.md").exists():  # not a git checkout: what .gitignore keeps, none of the report's outputs
        copy = tmp_path / PUBLISHED.name
        shutil.copytree(PUBLISHED, copy, ignore=shutil.ignore_patterns(
            "REPORT.md", "results.csv", "figures", "wandb", "csv", "*.log", "*.png", "*.partial.json",
            "hydra.yaml"))
        expected = PUBLISHED
    else:  # what git holds, so a study running (or a result being redone) in this checkout is unseen
        expected = tmp_path / "expected"
        expected.mkdir()
        for name in ("REPORT.md", "results.csv", "figures"):
            shutil.move(copy / name, expected / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an unfinished study lists its missing jobs, as published
        report = write_report(copy)
    assert report.read_text() == (expected / "REPORT.md").read_text()
    assert (copy / "results.csv").read_text() == (expected / "results.csv").read_text()
    assert sorted(p.name for p in (copy / "figures").iterdir()) == sorted(
        p.name for p in (expected / "figures").iterdir())


def _from_git(folder: Path, into: Path) -> Path | None:
    """``folder`` as git's index holds it (what is committed, or staged to be), written under
    ``into``; None outside a git checkout (or where git refuses it: it falls back to the files)."""
    def git(*args: str, cwd: Path = folder, **kw) -> bytes:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, check=True, **kw).stdout

    try:
        root = Path(git("rev-parse", "--show-toplevel").decode().strip())
        files = git("ls-files", "-z", "--full-name", ".")
        if not files:
            return None
        # paths from the top, so run from there
        git("checkout-index", "-z", "--stdin", f"--prefix={into / 'index'}/", cwd=root, input=files)
    except (OSError, subprocess.CalledProcessError):
        return None
    return into / "index" / folder.resolve().relative_to(root.resolve())
