"""Watching a batch run: progress bar with total slices and ETA, timestamped log lines (also to a file),
-q/-v/--log-file after the subcommand, skipped series without 'None', pydicom warnings one line per series."""

from __future__ import annotations

import fcntl
import json
import os
import re
import struct
import subprocess
import sys
import termios
import warnings
from pathlib import Path

import pydicom
import pytest

from ctdenoise.cli import EXIT_OK, build_parser, main
from ctdenoise.jobs.batch import run_batch
from ctdenoise.jobs.options import BatchOptions
from ctdenoise.registry import load_model

CT_SMALL = "CT_small.dcm"
TIMESTAMPED = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (DEBUG|INFO|WARNING|ERROR) ctdenoise[.\w]*: ")
LONG_STATION = "STATION" * 6  # 42 characters in an SH element (at most 16): pydicom warns on every read

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def denoise(*args: str | Path) -> int:
    return main(["denoise", *map(str, args), "--device", "cpu"])


def test_log_lines_are_timestamped_and_logging_options_work_after_the_subcommand(
    build_series, tiny_checkpoint, tmp_path, capsys
):
    series = build_series([0.0, 2.5], name="in/ct", source=CT_SMALL)
    log_file = tmp_path / "run.log"
    assert denoise(series, "-o", tmp_path / "out", "--model", tiny_checkpoint, "-q", "--log-file", log_file) == EXIT_OK
    assert capsys.readouterr().err == ""  # quiet: no info lines and no progress bar on the terminal
    logged = log_file.read_text().splitlines()
    assert logged and all(TIMESTAMPED.match(line) for line in logged), logged
    assert any(": done (2 slices, " in line for line in logged)

    assert denoise(series, "-o", tmp_path / "out", "--model", tiny_checkpoint, "-v") == EXIT_OK
    err = capsys.readouterr().err.splitlines()
    skipped = [line for line in err if ": skipped" in line]
    assert len(skipped) == 1 and TIMESTAMPED.match(skipped[0])
    assert "None" not in skipped[0] and "(done earlier: 2 slices, " in skipped[0]
    assert build_parser(["denoise"]).parse_args(["denoise", "x", "-o", "y", "-v"]).verbose
    assert build_parser(["denoise"]).parse_args(["-q", "denoise", "x", "-o", "y"]).quiet


def test_the_run_announces_the_slices_it_has_to_do(build_series, tiny_checkpoint, tmp_path):
    build_series([0.0, 2.5, 5.0], name="in/a", source=CT_SMALL)
    build_series([0.0, 2.5], name="in/b", source=CT_SMALL)
    announced = []

    def load():
        return load_model(str(tiny_checkpoint)), "tiny"

    options = BatchOptions(on_start=lambda *work: announced.append(work))
    report = run_batch([tmp_path / "in"], tmp_path / "out", load, options)
    assert announced == [(2, 5)] and report.totals()["slices"] == 5
    run_batch([tmp_path / "in"], tmp_path / "out", load, options)
    assert announced[-1] == (0, 0)  # everything up to date


def add_long_station(folder: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for path in sorted(folder.iterdir()):
            ds = pydicom.dcmread(path)
            ds.StationName = LONG_STATION
            ds.save_as(path)


def run_in_a_terminal(command: list[str]) -> tuple[int, str]:
    """Run ``command`` with its stderr on a pseudo-terminal (so tqdm draws its bar); return (code, stderr)."""
    leader, follower = os.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 200, 0, 0))  # 200 columns: room for the bar
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=follower, env=env)
    os.close(follower)
    chunks = []
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the pseudo-terminal closes when the process exits
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(leader)
    return process.wait(timeout=120), b"".join(chunks).decode("utf-8", "replace")


def test_progress_bar_shows_total_and_eta_and_warnings_are_one_line_per_series(build_series, tmp_path):
    warned = build_series([2.5 * k for k in range(4)], name="in/warned", source=CT_SMALL)
    add_long_station(warned)
    build_series([0.0, 2.5, 5.0], name="in/clean", source=CT_SMALL)
    (tmp_path / "in" / "notes.txt").write_text("not DICOM")
    code, err = run_in_a_terminal(
        [sys.executable, "-m", "ctdenoise", "denoise", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--device", "cpu"]
    )
    assert code == EXIT_OK, err
    assert re.search(r"denoising: +\d+%.*\| *\d+/7 \[\d\d:\d\d<\d\d:\d\d", err), err  # total slices and an ETA
    lines = [line.strip("\r") for line in err.replace("\r", "\n").splitlines()]
    warning_lines = [line for line in lines if "pydicom warned" in line]
    assert len(warning_lines) == 1, err
    (line,) = warning_lines
    assert TIMESTAMPED.match(line) and "warned/series" in line
    assert "exceeds the maximum length of 16 allowed for VR SH (4 files: slice000.dcm, slice001.dcm, slice002.dcm and 1 more)" in line
    assert "UserWarning" not in err and LONG_STATION not in err and "force=True" not in err
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    warned_entry = next(s for s in report["series"] if s["key"].startswith("warned/"))
    assert len(warned_entry["warnings"]) == 1
    assert next(s for s in report["series"] if s["key"].startswith("clean/"))["warnings"] == []
    assert any("notes.txt: not a DICOM file" in p and "force" not in p for p in report["discovery_problems"])


def test_a_log_file_that_cannot_be_opened_is_a_usage_error(tmp_path, capsys):
    target = tmp_path / "no_such_folder" / "run.log"
    assert main(["denoise", str(tmp_path), "-o", str(tmp_path / "out"), "--log-file", str(target)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"ctdenoise denoise: error: {target}: cannot open the log file: No such file or directory"
    assert not (tmp_path / "out").exists()
