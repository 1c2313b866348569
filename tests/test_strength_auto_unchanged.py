"""``--strength auto`` that chooses 0 for a series (its noise already low) writes nothing for it unless asked:
a copy with new UIDs labelled "denoised ... s=0" would be the input unchanged under a misleading name."""

from __future__ import annotations

import json
import shutil

from ctdenoise.cli import main
from ctdenoise.strength_table import write_strength_table


def test_a_series_auto_leaves_at_strength_zero_is_reported_not_written(build_series, tiny_checkpoint, tmp_path,
                                                                        capsys):
    zero_table_checkpoint = shutil.copytree(tiny_checkpoint, tmp_path / "zero_table")
    write_strength_table(zero_table_checkpoint, [(1000.0, 0.0), (2000.0, 1.0)], {"data": "test"}, "pytest")  # 0 for any real CT
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
