"""The shipped example series is a valid, position-sorted CT series built from a real slice."""

from __future__ import annotations

import numpy as np
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


def test_example_refuses_an_existing_folder(tmp_path, capsys):
    assert main(["example", str(tmp_path)]) == 2
    assert "already exists" in capsys.readouterr().err
