"""``--strength auto`` that chooses 0 for a series (its noise already low) writes nothing for it unless asked:
a copy with new UIDs labelled "denoised ... s=0" would be the input unchanged under a misleading name."""

from __future__ import annotations

import json
import shutil

import pytest

from ctdenoise.cli import main
from ctdenoise.strength_table import write_strength_table


@pytest.fixture()
def zero_table_checkpoint(tiny_checkpoint, tmp_path):
    """A copy of ``tiny_checkpoint`` whose strength table chooses 0 below 1000 HU of noise (every real series)."""
    directory = tmp_path / "zero_table"
    shutil.copytree(tiny_checkpoint, directory)
    write_strength_table(directory, [(1000.0, 0.0), (2000.0, 1.0)], {"data": "test"}, "pytest")
    return directory


def test_a_series_auto_leaves_at_strength_zero_is_reported_not_written(build_series, zero_table_checkpoint,
                                                                        tmp_path, capsys):
    series = build_series([0.0, 5.0], source="CT_small.dcm")
    out = tmp_path / "out"
    command = ["denoise", str(series), "-o", str(out), "--model", str(zero_table_checkpoint), "--device", "cpu",
               "--strength", "auto"]
    assert main(command) == 0
    report = json.loads((out / "report.json").read_text())
    [entry] = report["series"]
    assert (entry["status"], entry["strength"], entry["output"]) == ("unchanged", 0.0, None)
    assert report["counts"] == {"unchanged": 1} and report["totals"]["complete"] == 1
    assert not list(out.rglob("*.dcm"))
    assert "left unchanged: noise already low" in capsys.readouterr().err

    assert main([*command, "--write-unchanged"]) == 0  # asked for: the copy is written, its strength printed
    [entry] = json.loads((out / "report.json").read_text())["series"]
    assert entry["status"] == "done" and len(list((out / entry["output"]).glob("*.dcm"))) == 2
    assert "strength 0" in capsys.readouterr().err
