"""``ctdenoise serve`` as a process between real DICOM peers: dcmtk's storescu and pynetdicom send, Orthanc
receives (C-STORE and STOW-RS), and the service is killed with SIGKILL while receiving and while sending.

Every server listens on 127.0.0.1 and is stopped by the test that started it. The model is the untrained
RN50 checkpoint of conftest (``tiny_checkpoint``), on the CPU, on series built from pydicom's CT_small.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pydicom
import pytest
from pynetdicom import AE, evt
from pynetdicom.sop_class import CTImageStorage, Verification

from ctdenoise.serve.spool import spool_status
from orthanc import Orthanc, free_port, orthanc_available
from test_serve import association, wait_for


def dcmtk_tool(name: str) -> str | None:
    """The path of dcmtk's ``name`` on PATH (pynetdicom installs Python apps of the same names), or None."""
    for folder in os.environ.get("PATH", "").split(os.pathsep):
        candidate = shutil.which(name, path=folder)
        if candidate is None:
            continue
        version = subprocess.run([candidate, "--version"], capture_output=True, text=True, timeout=30).stdout
        if version.startswith("$dcmtk:"):
            return candidate
    return None


STORESCU = dcmtk_tool("storescu")
pytestmark = pytest.mark.skipif(
    not orthanc_available() or STORESCU is None,
    reason="needs the Debian packages orthanc, orthanc-dicomweb and dcmtk (.ci/run installs them)",
)

CT_SMALL = "CT_small.dcm"


class ServeProcess:
    """``ctdenoise serve`` in a child process, on a free port, with the test model."""

    def __init__(self, spool: Path, model: Path, *options: str, port: int | None = None) -> None:
        self.port = port or free_port()
        self.log = spool.parent / f"serve-{self.port}.log"
        command = [sys.executable, "-m", "ctdenoise", "serve", "--spool", str(spool), "--port", str(self.port),
                   "--model", str(model), "--device", "cpu", "--series-timeout", "1", "--retry-initial", "0.3",
                   "--retry-max", "1", *options]
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT,
                                            env={**os.environ, "OMP_NUM_THREADS": "1"})
        wait_for(self._answers_echo, timeout=120, what=f"ctdenoise serve to listen (log: {self.log})")

    def _answers_echo(self) -> bool:
        assert self.process.poll() is None, self.log.read_text()
        ae = AE(ae_title="SCANNER")  # the calling AE title the tests allow
        ae.add_requested_context(Verification)
        assoc = ae.associate("127.0.0.1", self.port, ae_title="CTDENOISE")
        if not assoc.is_established:
            return False
        assoc.release()
        return True

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def terminate(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(60)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.kill()


@contextmanager
def serve(spool: Path, model: Path, *options: str, port: int | None = None):
    node = ServeProcess(spool, model, *options, port=port)
    try:
        yield node
    finally:
        node.stop()


def storescu(port: int, called: str, files) -> None:
    result = subprocess.run([STORESCU, "-aet", "SCANNER", "-aec", called, "127.0.0.1", str(port), *map(str, files)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def delivered(spool: Path, count: int = 1) -> bool:
    status = spool_status(spool)
    return status["counts"]["done"] >= count and status["counts"]["pending"] == 0


def slice_positions(pacs: Orthanc, series_id: str) -> list[float]:
    """Positions along the slice normal of a series' instances in Orthanc's ``ordered-slices`` order."""
    order = [item[0] for item in pacs.get(f"/series/{series_id}/ordered-slices")["SlicesShort"]]
    positions = []
    for instance in order:
        tags = pacs.get(f"/instances/{instance}/simplified-tags")
        orientation = np.array(tags["ImageOrientationPatient"].split("\\"), dtype=float)
        normal = np.cross(orientation[:3], orientation[3:])
        positions.append(float(np.dot(np.array(tags["ImagePositionPatient"].split("\\"), dtype=float), normal)))
    return positions


def check_derived_next_to_source(pacs: Orthanc, source_files) -> None:
    """The PACS holds one patient, one study, the source series and one derived series with every instance."""
    sources = [pydicom.dcmread(p) for p in source_files]
    series = pacs.series()
    assert len(pacs.get("/patients")) == 1 and len(pacs.get("/studies")) == 1 and len(series) == 2
    source = next(s for s in series if s["MainDicomTags"]["SeriesInstanceUID"] == sources[0].SeriesInstanceUID)
    derived = next(s for s in series if s is not source)
    assert derived["ParentStudy"] == source["ParentStudy"]
    assert len(derived["Instances"]) == len(source["Instances"]) == len(sources)
    assert pacs.get(f"/studies/{derived['ParentStudy']}")["MainDicomTags"]["StudyInstanceUID"] == sources[0].StudyInstanceUID
    derived_positions = slice_positions(pacs, derived["ID"])
    assert derived_positions == slice_positions(pacs, source["ID"])
    assert len(set(np.round(derived_positions, 3))) == len(sources)
    for instance in derived["Instances"]:
        tags = pacs.get(f"/instances/{instance}/simplified-tags")
        assert tags["ImageType"].startswith("DERIVED")
        assert tags["SourceImageSequence"][0]["ReferencedSOPInstanceUID"] in {s.SOPInstanceUID for s in sources}


def test_series_sent_with_storescu_appears_in_orthanc_as_derived_series_by_c_store_and_by_stow(
        build_series, tiny_checkpoint, tmp_path):
    files = sorted(build_series([10.0, 0.0, 15.0, 5.0], instance_numbers=[3, 1, 4, 2], source=CT_SMALL).iterdir())
    spool = tmp_path / "spool"
    with Orthanc(tmp_path / "a") as by_cstore, Orthanc(tmp_path / "b") as by_stow:
        for pacs in (by_cstore, by_stow):
            storescu(pacs.dicom_port, "ORTHANC", files)  # the source series, as the scanner sent it to the PACS
        with serve(spool, tiny_checkpoint, "--forward", f"ORTHANC@127.0.0.1:{by_cstore.dicom_port}",
                   "--stow", by_stow.stow_url, "--allow-ae", "SCANNER") as node:
            storescu(node.port, "CTDENOISE", files)
            wait_for(lambda: delivered(spool), what="delivery to both PACS")
            assert node.terminate() == 0  # SIGTERM: a clean exit
        for pacs in (by_cstore, by_stow):
            check_derived_next_to_source(pacs, files)
    log = node.log.read_text()
    assert "association from SCANNER" in log and "delivered to forward:ORTHANC@" in log
    assert "CompressedSamples" not in log and pydicom.dcmread(files[0]).SOPInstanceUID not in log  # no patient data


@pytest.mark.slow
def test_orthanc_routes_a_series_to_the_node_and_gets_the_derived_series_back(build_series, tiny_checkpoint, tmp_path):
    files = sorted(build_series([0.0, 5.0, 10.0], source=CT_SMALL).iterdir())
    spool, node_port = tmp_path / "spool", free_port()
    with Orthanc(tmp_path / "pacs", modalities={"ctdenoise": ("CTDENOISE", "127.0.0.1", node_port)}) as pacs:
        storescu(pacs.dicom_port, "ORTHANC", files)
        (source_id,) = pacs.get("/series")
        with serve(spool, tiny_checkpoint, "--forward", f"ORTHANC@127.0.0.1:{pacs.dicom_port}", "--allow-ae", "ORTHANC",
                   "SCANNER", port=node_port) as node:
            pacs.post("/modalities/ctdenoise/store", {"Resources": [source_id], "Synchronous": True})
            wait_for(lambda: delivered(spool), what="the derived series to come back")
            assert node.terminate() == 0
        check_derived_next_to_source(pacs, files)


@pytest.mark.slow
def test_sigkill_while_receiving_then_restart_loses_and_duplicates_nothing(build_series, tiny_checkpoint, tmp_path):
    files = sorted(build_series([0.0, 5.0, 10.0, 15.0], source=CT_SMALL).iterdir())
    spool = tmp_path / "spool"
    with Orthanc(tmp_path / "pacs") as pacs:
        forward = ("--forward", f"ORTHANC@127.0.0.1:{pacs.dicom_port}")
        with serve(spool, tiny_checkpoint, *forward) as node:
            with association(node.port) as assoc:
                for path in files[:2]:
                    assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
                node.kill()  # mid-association: the two answered instances must survive
        assert len(list((spool / "series").rglob("*.dcm"))) == 2
        with serve(spool, tiny_checkpoint, *forward) as node:
            storescu(node.port, "CTDENOISE", files[1:])  # the sender goes on, repeating the last one
            wait_for(lambda: delivered(spool), what="delivery after the restart")
            assert node.terminate() == 0
        series = pacs.series()
        assert len(series) == 1 and len(series[0]["Instances"]) == 4


class SlowStorage:
    """A pynetdicom Storage SCP that takes ``delay`` seconds per instance and records every SOP Instance UID."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.received: list[str] = []
        self.lock = threading.Lock()
        self.ae = AE(ae_title="SLOWPACS")
        self.ae.add_supported_context(CTImageStorage)
        self.port = free_port()

    def _store(self, event) -> int:
        time.sleep(self.delay)
        with self.lock:
            self.received.append(str(event.request.AffectedSOPInstanceUID))
        return 0x0000

    def __enter__(self) -> SlowStorage:
        self.server = self.ae.start_server(("127.0.0.1", self.port), block=False,
                                           evt_handlers=[(evt.EVT_C_STORE, self._store)])
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()


@pytest.mark.slow
def test_sigkill_while_sending_then_restart_sends_the_same_uids_again(build_series, tiny_checkpoint, tmp_path):
    files = sorted(build_series([0.0, 5.0, 10.0, 15.0], source=CT_SMALL).iterdir())
    spool = tmp_path / "spool"
    with SlowStorage(delay=1.0) as pacs:
        forward = ("--forward", f"SLOWPACS@127.0.0.1:{pacs.port}")
        with serve(spool, tiny_checkpoint, *forward) as node:
            storescu(node.port, "CTDENOISE", files)
            wait_for(lambda: pacs.received, what="the first instance to reach the PACS")
            node.kill()  # in the middle of the C-STORE association
        before = list(pacs.received)
        assert 0 < len(before) < 4 and spool_status(spool)["counts"]["pending"] == 1
        with serve(spool, tiny_checkpoint, *forward) as node:
            wait_for(lambda: delivered(spool), what="delivery after the restart")
            assert node.terminate() == 0
    assert len(set(pacs.received)) == 4 and set(before) <= set(pacs.received)


@pytest.mark.slow
def test_sigterm_while_sending_finishes_the_delivery_exits_0_and_never_sends_it_again(
        build_series, tiny_checkpoint, tmp_path):
    files = sorted(build_series([0.0, 5.0, 10.0], source=CT_SMALL).iterdir())
    spool = tmp_path / "spool"
    with SlowStorage(delay=1.0) as pacs:
        forward = ("--forward", f"SLOWPACS@127.0.0.1:{pacs.port}")
        with serve(spool, tiny_checkpoint, *forward) as node:
            storescu(node.port, "CTDENOISE", files)
            wait_for(lambda: pacs.received, what="the first instance to reach the PACS")
            assert node.terminate() == 0
            with pytest.raises(AssertionError):  # no longer listening
                storescu(node.port, "CTDENOISE", files[:1])
        assert len(pacs.received) == 3  # the delivery under way was finished, not cut
        with serve(spool, tiny_checkpoint, *forward) as node:
            wait_for(lambda: delivered(spool), what="the parked series to be recorded as done")
            assert node.terminate() == 0
    assert len(pacs.received) == 3  # confirmed before the stop: not sent again
