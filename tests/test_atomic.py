"""Atomic file writes: all or nothing, and published with the umask's permissions (not tempfile's owner-only)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from ctdenoise.errors import OutputError
from ctdenoise.io import atomic_write_dir
from ctdenoise.io.atomic import atomic_write_file, refuse_inputs
from ctdenoise.jobs.outdir import write_text_atomic
from ctdenoise.strength_table import write_strength_table


@pytest.fixture
def umask_027() -> Iterator[int]:
    """Run the test under umask 027 (group may read, others nothing), a common server setting."""
    previous = os.umask(0o027)
    try:
        yield 0o027
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_file_replaces_or_leaves_the_old_file(tmp_path: Path) -> None:
    target = tmp_path / "report.json"
    target.write_text("old")

    def fail(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        atomic_write_file(target, fail)
    assert target.read_text() == "old" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]
    atomic_write_file(target, lambda tmp: tmp.write_text("new"), durable=True)
    assert target.read_text() == "new" and sorted(p.name for p in tmp_path.iterdir()) == ["report.json"]


def test_outputs_get_the_umask_permissions(tmp_path: Path, umask_027: int) -> None:
    expected_file, expected_dir = 0o666 & ~umask_027, 0o777 & ~umask_027
    with atomic_write_dir(tmp_path / "series") as staging:
        (staging / "1.dcm").write_bytes(b"x")
    write_text_atomic(tmp_path / "report.json", "{}")
    atomic_write_file(tmp_path / "model.safetensors", lambda tmp: tmp.write_bytes(b"x"))
    assert _mode(tmp_path / "series") == expected_dir == 0o750
    assert _mode(tmp_path / "series" / "1.dcm") == expected_file == 0o640
    assert _mode(tmp_path / "report.json") == expected_file
    assert _mode(tmp_path / "model.safetensors") == expected_file


def test_saved_and_exported_model_files_are_readable_by_the_group(tiny_checkpoint: Path, tmp_path: Path,
                                                                  umask_027: int) -> None:
    from ctdenoise.model import export_half

    export_half(tiny_checkpoint, tmp_path / "shipped")
    write_strength_table(tmp_path / "shipped", [(5.0, 0.0), (40.0, 1.0)], fitted_on={"data": "test"}, command="test")
    for name in ("model.safetensors", "config.json", "strength.json"):
        assert _mode(tmp_path / "shipped" / name) == 0o640, name


def test_an_output_may_lie_inside_an_input_folder_but_not_hold_or_be_an_input(tmp_path):
    inputs = tmp_path / "in"
    (inputs / "series").mkdir(parents=True)
    refuse_inputs(inputs / "derived", [inputs])  # a derived series beside its source
    with pytest.raises(OutputError, match="refusing to write over the input"):
        refuse_inputs(tmp_path, [inputs / "series"])  # publishing tmp_path would replace the input
    with pytest.raises(OutputError, match="refusing to write over the input"):
        refuse_inputs(inputs / "series" / ".." / "series", [inputs / "series"])
    (inputs / "scan.nii").write_bytes(b"x")
    os.link(inputs / "scan.nii", tmp_path / "linked.nii")
    with pytest.raises(OutputError, match="same file"):
        refuse_inputs(tmp_path / "linked.nii", [inputs / "scan.nii"])


def test_a_run_folder_may_hold_an_input_but_not_lie_inside_or_be_one(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    refuse_inputs(tmp_path, [inputs], run_folder=True)  # `ctdenoise denoise in -o .`: each output is checked
    for outdir in (inputs / "out", inputs):
        with pytest.raises(OutputError, match="lies inside the input"):
            refuse_inputs(outdir, [inputs], run_folder=True)
