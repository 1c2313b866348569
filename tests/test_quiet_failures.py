"""Failures stay quiet and tidy: a destination that is down costs the node's log one warning per attempt (no
pynetdicom ERROR lines without ``-v``), and a series that fails leaves no empty folders in OUTDIR."""

from __future__ import annotations

import logging

import pytest

from ctdenoise.cli import main
from ctdenoise.cli.serve import quiet_pynetdicom
from ctdenoise.errors import InputError
from ctdenoise.serve.senders import CStoreDestination, DeliveryError
from orthanc import free_port


@pytest.fixture
def pynetdicom_level():
    logger = logging.getLogger("pynetdicom")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.mark.parametrize("verbose", [False, True])
def test_a_destination_that_is_down_logs_pynetdicom_errors_only_with_v(verbose, ct_small, caplog, pynetdicom_level):
    quiet_pynetdicom(verbose)
    with caplog.at_level(logging.DEBUG, logger="ctdenoise"), pytest.raises(DeliveryError, match="not established"):
        CStoreDestination("PACS", "127.0.0.1", free_port(), timeout=5).deliver([ct_small])
    errors = [r for r in caplog.records if r.name.startswith("pynetdicom") and r.levelno >= logging.ERROR]
    assert bool(errors) == verbose, [r.getMessage() for r in errors]


def test_a_failed_series_leaves_no_empty_folders_in_the_output(build_series, tiny_checkpoint, tmp_path, monkeypatch):
    import ctdenoise.jobs.series

    build_series([0.0, 5.0], name="in/patient/study", source="CT_small.dcm")

    def fails(*_args, **_kwargs):
        raise InputError(None, "cannot denoise this series")

    monkeypatch.setattr(ctdenoise.jobs.series, "denoise_while_writing", fails)
    out = tmp_path / "out"
    assert main(["-q", "denoise", str(tmp_path / "in"), "-o", str(out), "--model", str(tiny_checkpoint),
                 "--device", "cpu"]) == 1
    assert [p.name for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")] == []  # no patient/study/
    assert not [p for p in out.rglob("*") if p.is_dir() and not any(p.iterdir())]
