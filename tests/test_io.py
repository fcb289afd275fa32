"""Atomic writes: files get the same permissions as any other file the job writes."""

from __future__ import annotations

import os
import stat

import pytest
import torch
from matplotlib.figure import Figure

from losslands.io import save_figure, save_torch, write_json, write_text


@pytest.fixture
def umask():
    """Set the process umask for one test and restore it afterwards."""
    previous = os.umask(0o022)
    os.umask(previous)

    def set_(mask: int) -> None:
        os.umask(mask)

    yield set_
    os.umask(previous)


def _mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o002, 0o077])
def test_atomic_files_respect_the_umask(tmp_path, umask, mask):
    umask(mask)
    plain = tmp_path / "plain.txt"
    plain.write_text("x")  # what open() gives, as Lightning's own files get
    fig = Figure()
    fig.subplots().plot([0, 1])
    written = [
        write_json(tmp_path / "a.json", {"x": 1}),
        save_torch(tmp_path / "m.pt", {"w": torch.zeros(2)}),
        save_figure(tmp_path / "f.png", fig),
        write_text(tmp_path / "r.md", "report"),
    ]
    assert _mode(plain) == 0o666 & ~mask
    for path in written:
        assert _mode(path) == _mode(plain), path


def test_failed_write_leaves_no_temp_file(tmp_path):
    with pytest.raises(TypeError):
        write_json(tmp_path / "a.json", {"x": object()})
    assert list(tmp_path.iterdir()) == []


def test_failed_text_write_keeps_the_old_file(tmp_path):
    path = write_text(tmp_path / "sub" / "r.md", "λmax ± s.e.\n")
    assert path.read_text(encoding="utf-8") == "λmax ± s.e.\n"
    with pytest.raises(TypeError):
        write_text(path, 3)  # not a str: the write fails after the temp file exists
    assert path.read_text(encoding="utf-8") == "λmax ± s.e.\n"
    assert [p.name for p in path.parent.iterdir()] == ["r.md"]
