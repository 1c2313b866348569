"""SIGINT/SIGTERM to a real ``ctdenoise denoise`` mid-run: exit 130/143, one message, report.json, no staging.

The run denoises three series (8, 2 and 2 slices) built from pydicom's real CT_small slice with the
shipped model; the signal is sent as soon as the first series is being written (its staging folder
exists), so no series has been published yet: the case where the run used to leave no report at all.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ctdenoise.cli import EXIT_OK, main
from ctdenoise.jobs.interrupt import StopRequested, StopSignals, stop_on_signals

CT_SMALL = "CT_small.dcm"
SLICES = {"p1": 8, "p2": 2, "p3": 2}


@pytest.fixture
def archive(build_series, tmp_path) -> Path:
    for name, slices in SLICES.items():
        build_series([2.5 * k for k in range(slices)], name=f"archive/{name}/ct", source=CT_SMALL)
    return tmp_path / "archive"


def staging(out: Path) -> list[Path]:
    return [p for p in out.rglob("*") if ".partial-" in p.name or ".old-" in p.name] if out.exists() else []


def start_and_signal(archive: Path, out: Path, signum: int) -> subprocess.CompletedProcess:
    """Start the CLI, send ``signum`` once it is writing its first series, and wait for it to exit."""
    command = [sys.executable, "-m", "ctdenoise", "denoise", str(archive), "-o", str(out), "--device", "cpu"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 240  # generous: a loaded CI machine starts torch slowly
    while not staging(out):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never started writing"
        time.sleep(0.01)
    process.send_signal(signum)
    stdout, stderr = process.communicate(timeout=240)
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.mark.parametrize("signum, code, rerun", [(signal.SIGINT, 130, False), (signal.SIGTERM, 143, True)])
def test_a_signal_mid_run_stops_cleanly_and_a_rerun_resumes(signum, code, rerun, archive, tmp_path):
    out = tmp_path / "out"
    done = start_and_signal(archive, out, signum)

    assert done.returncode == code, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stderr.splitlines() if "interrupted:" in line]
    assert len(lines) == 1 and lines[0].endswith("interrupted: 0 of 3 series done; run again to resume"), done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] == signal.Signals(signum).name
    assert {s["status"] for s in report["series"]} == {"pending"} and len(report["series"]) == 3
    assert staging(out) == []
    visible = [p for p in out.rglob("*") if not any(part.startswith(".") for part in p.relative_to(out).parts)]
    assert sorted(p.name for p in visible) == ["report.html", "report.json"]  # no series folder, not even an empty one
    if not rerun:
        return
    assert main(["denoise", str(archive), "-o", str(out), "--device", "cpu"]) == EXIT_OK
    report = json.loads((out / "report.json").read_text())
    assert report["interrupted"] is None and report["counts"] == {"done": 3}
    assert report["totals"]["slices"] == sum(SLICES.values())


def test_a_stop_request_waits_for_a_safe_point_except_in_immediate_mode():
    stop = StopSignals()
    stop.handle(signal.SIGTERM)  # deferred: only recorded
    with pytest.raises(StopRequested) as raised:
        stop.check()
    assert raised.value.signum == signal.SIGTERM

    stop = StopSignals()
    with pytest.raises(StopRequested):
        with stop.immediate():
            stop.handle(signal.SIGINT)
    stop.handle(signal.SIGTERM)  # a second signal is ignored: the first one stays
    assert stop.signum == signal.SIGINT


def test_signal_handlers_are_restored_after_the_run():
    before = signal.getsignal(signal.SIGTERM)
    with stop_on_signals():
        assert signal.getsignal(signal.SIGTERM) is not before
    assert signal.getsignal(signal.SIGTERM) is before
