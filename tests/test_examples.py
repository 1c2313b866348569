"""The shipped example series is a valid, position-sorted CT series built from a real slice."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest

from ctdenoise.cli import main
from ctdenoise.io import read_volume


def test_example_command_writes_a_readable_series(tmp_path, capsys):
    folder = tmp_path / "example"
    assert main(["example", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == str(folder)
    volume = read_volume(folder)
    assert volume.hu.shape == (4, 128, 128)
    assert volume.spacing[0] == pytest.approx(5.0)
    # each copy adds 10 stored units (1 HU each for CT_small's slope 1) to the real slice
    np.testing.assert_allclose(np.diff(volume.hu.mean(axis=(1, 2))), 10.0, atol=1e-3)


def _sop_uids(folder):
    return sorted(str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in folder.iterdir())


def test_example_runs_twice_and_reuses_the_series(tmp_path, capsys):
    folder = tmp_path / "example"
    assert main(["example", str(folder)]) == 0
    first = _sop_uids(folder)
    capsys.readouterr()
    assert main(["example", str(folder)]) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(folder)
    assert "reusing" in captured.err
    assert _sop_uids(folder) == first  # untouched


def test_example_force_writes_a_new_series(tmp_path):
    folder = tmp_path / "example"
    assert main(["example", str(folder)]) == 0
    first = _sop_uids(folder)
    assert main(["example", "--force", str(folder)]) == 0
    second = _sop_uids(folder)
    assert len(second) == 4 and set(second).isdisjoint(first)
    assert [p.name for p in tmp_path.iterdir()] == ["example"]  # no staging folder left behind


def test_example_fills_an_empty_folder(tmp_path):
    assert main(["example", str(tmp_path)]) == 0
    assert read_volume(tmp_path).hu.shape == (4, 128, 128)


@pytest.mark.parametrize("force", [False, True])
def test_example_never_touches_a_folder_with_other_files(tmp_path, capsys, force):
    (tmp_path / "notes.txt").write_text("mine")
    assert main(["example", *(["--force"] if force else []), str(tmp_path)]) == 2
    assert "not the ctdenoise example" in capsys.readouterr().err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]
