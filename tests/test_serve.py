"""``ctdenoise serve``'s parts, in process: the SCP with pynetdicom as the sender, the spool, the stable UIDs,
and a node delivering to a folder and to a real Orthanc that is down at first.

The series are built from pydicom's real CT_small slice (128x128, so the untrained RN50 model is fast on
the CPU). Servers listen on 127.0.0.1 and are stopped by the test that started them.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pydicom
import pytest
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage, EnhancedCTImageStorage, MRImageStorage, Verification

from conftest import real_test_file
from ctdenoise.cli import main
from ctdenoise.jobs.series import derived_uid_rule
from ctdenoise.runtime.prepare import prepare
from ctdenoise.runtime.settings import InferenceSettings
from ctdenoise.serve.derive import SeriesDenoiser
from ctdenoise.serve.node import Node, RetryPolicy
from ctdenoise.serve.scp import DATASET_MISMATCH, ScpConfig, StorageSCP
from ctdenoise.serve.senders import CStoreDestination, FolderDestination, StowDestination
from ctdenoise.serve.spool import OUT_OF_RESOURCES, Spool, spool_status, uid_hash
from orthanc import Orthanc, free_port, orthanc_available

CT_SMALL = "CT_small.dcm"
LABEL = "tiny@test"
SETTINGS = InferenceSettings(device="cpu")


def wait_for(predicate: Callable[[], object], timeout: float = 90.0, what: str = "condition") -> object:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


@contextmanager
def association(port: int, ae_title: str = "SCANNER", contexts=(CTImageStorage,)) -> Iterator:
    ae = AE(ae_title=ae_title)
    for context in contexts:
        ae.add_requested_context(context)
    assoc = ae.associate("127.0.0.1", port, ae_title="CTDENOISE")
    try:
        yield assoc
    finally:
        if assoc.is_established:
            assoc.release()


def send(port: int, files, ae_title: str = "SCANNER") -> list[int]:
    """C-STORE ``files`` in one association; the status of each."""
    with association(port, ae_title) as assoc:
        assert assoc.is_established
        return [assoc.send_c_store(pydicom.dcmread(path)).Status for path in files]


@contextmanager
def running_scp(spool: Spool, config: ScpConfig | None = None) -> Iterator[StorageSCP]:
    scp = StorageSCP(spool, config or ScpConfig(port=0))
    with spool.locked():
        scp.start()
        try:
            yield scp
        finally:
            scp.stop()


@contextmanager
def running_node(spool_dir: Path, model, destinations, series_timeout: float = 0.5, label: str = LABEL,
                 **scp_options) -> Iterator[int]:
    """A node in a background thread, with the in-memory ``model`` labelled ``label``; yields its port."""
    spool = Spool(spool_dir)
    denoiser = SeriesDenoiser(prepare(model, SETTINGS, label=label))
    node = Node(spool, StorageSCP(spool, ScpConfig(port=0, **scp_options)), denoiser, destinations,
                series_timeout=series_timeout, retry=RetryPolicy(0.3, 1.0), poll=0.1)
    stop, ports, errors = threading.Event(), queue.Queue(), []

    def serve() -> None:
        try:
            node.run(stop, ports.put)
        except BaseException as error:  # noqa: BLE001 - reported by the test, not lost in the thread
            errors.append(error)
            ports.put(None)

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        port = ports.get(timeout=60)
        assert port, errors
        yield port
    finally:
        stop.set()
        thread.join(60)
    assert not thread.is_alive() and not errors, errors


def done_records(spool_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((spool_dir / "done").glob("*.json"))]


@pytest.fixture
def series(build_series) -> list[Path]:
    folder = build_series([0.0, 5.0, 10.0], name="scanner", source=CT_SMALL)
    return sorted(folder.iterdir())


def test_series_received_over_dicom_is_delivered_to_a_folder_as_derived_series(series, tiny_model, tmp_path):
    out, spool_dir = tmp_path / "out", tmp_path / "spool"
    sources = [pydicom.dcmread(p) for p in series]
    with running_node(spool_dir, tiny_model, [FolderDestination(out)]) as port:
        assert send(port, series) == [0, 0, 0]
        wait_for(lambda: done_records(spool_dir), what="the series to be delivered")

    derived = [pydicom.dcmread(p) for p in sorted(out.rglob("*.dcm"))]
    assert len(derived) == 3
    derived_uid = derived_uid_rule(LABEL, SETTINGS)
    by_source = {ds.SourceImageSequence[0].ReferencedSOPInstanceUID: ds for ds in derived}
    assert set(by_source) == {s.SOPInstanceUID for s in sources}
    for source in sources:
        ds = by_source[source.SOPInstanceUID]
        assert ds.SOPInstanceUID == derived_uid(source.SOPInstanceUID) != source.SOPInstanceUID
        assert ds.SeriesInstanceUID == derived_uid(source.SeriesInstanceUID)
        assert (ds.StudyInstanceUID, ds.PatientID) == (source.StudyInstanceUID, source.PatientID)
        assert ds.ImageType[0] == "DERIVED" and ds.ImagePositionPatient == source.ImagePositionPatient
        assert ds.SeriesDescription.endswith(f"denoised {LABEL} s=1") and "strength 1" in ds.DerivationDescription
    assert [p.parent.name for p in out.rglob("*.dcm")] == [uid_hash(derived[0].SeriesInstanceUID, 20)] * 3
    status = spool_status(spool_dir)
    assert status["counts"] == {"pending": 0, "done": 1, "failed": 0}
    assert status["done"][0]["instances"] == status["done"][0]["derived"] == 3
    text = json.dumps(status)
    assert all(str(value) not in text for value in (sources[0].PatientName, sources[0].PatientID))
    assert not list((spool_dir / "series").iterdir())  # delivered series leave the spool


#: What differs between two derivations of the same series: the moment of derivation (the derived UIDs are
#: computed by the same rule, ctdenoise.io.uids).
PER_DERIVATION = {"InstanceCreationDate", "InstanceCreationTime", "SeriesDate", "SeriesTime", "ContentDate",
                  "ContentTime"}


def comparable(ds: pydicom.Dataset) -> dict:
    """Every attribute of ``ds`` and its file meta, by keyword, except :data:`PER_DERIVATION`."""
    elements = [*ds.file_meta, *ds]
    return {e.keyword or str(e.tag): e.value for e in elements if e.keyword not in PER_DERIVATION}


def test_the_node_derives_what_ctdenoise_denoise_writes(series, tiny_checkpoint, tmp_path):
    """A series sent to the node and the same series given to ``ctdenoise denoise`` give the same derived files,
    pixel for pixel and attribute for attribute, derived UIDs included, except the creation times (one
    function, ctdenoise.jobs.series.denoise_series, derives both)."""
    from ctdenoise.registry import load_model, model_label

    assert main(["-q", "denoise", str(series[0].parent), "-o", str(tmp_path / "batch"), "--model",
                 str(tiny_checkpoint), "--device", "cpu"]) == 0
    out, spool_dir = tmp_path / "node", tmp_path / "spool"
    with running_node(spool_dir, load_model(tiny_checkpoint), [FolderDestination(out)],
                      label=model_label(tiny_checkpoint)) as port:
        assert send(port, series) == [0, 0, 0]  # on a busy machine the series may complete in two parts
        wait_for(lambda: sum(r["derived"] for r in done_records(spool_dir)) == 3, what="the series to be delivered")

    def by_source(folder: Path) -> dict[str, pydicom.Dataset]:
        datasets = [pydicom.dcmread(p) for p in folder.rglob("*.dcm")]
        return {ds.SourceImageSequence[0].ReferencedSOPInstanceUID: ds for ds in datasets}

    batch, node = by_source(tmp_path / "batch"), by_source(out)
    assert set(batch) == set(node) == {pydicom.dcmread(p).SOPInstanceUID for p in series}
    for source_uid, ours in node.items():
        theirs = batch[source_uid]
        assert ours.PixelData == theirs.PixelData
        assert comparable(ours) == comparable(theirs)
    assert len({ds.SeriesInstanceUID for ds in node.values()}) == 1


@pytest.mark.slow  # two 512x512 frames through the RN50 model on the CPU
def test_an_enhanced_ct_instance_is_received_and_derived_as_one_multiframe_file(tiny_model, tmp_path):
    source = pydicom.dcmread(real_test_file("eCT_Supplemental.dcm"))
    out, spool_dir = tmp_path / "out", tmp_path / "spool"
    with running_node(spool_dir, tiny_model, [FolderDestination(out)]) as port:
        with association(port, contexts=(EnhancedCTImageStorage,)) as assoc:
            assert assoc.send_c_store(source).Status == 0
        wait_for(lambda: done_records(spool_dir), what="the Enhanced CT series to be delivered")
    [derived] = [pydicom.dcmread(p) for p in out.rglob("*.dcm")]
    assert derived.SOPClassUID == EnhancedCTImageStorage and int(derived.NumberOfFrames) == 2
    assert derived.SOPInstanceUID == derived_uid_rule(LABEL, SETTINGS)(source.SOPInstanceUID)
    assert derived.StudyInstanceUID == source.StudyInstanceUID


def test_only_ct_is_negotiated_and_a_non_ct_dataset_is_refused(ct_small, tmp_path):
    spool = Spool(tmp_path / "spool")
    fake = pydicom.dcmread(ct_small)
    fake.Modality = "MR"  # a CT Image Storage object that is not CT
    with running_scp(spool) as scp:
        with association(scp.port, contexts=(CTImageStorage, MRImageStorage, Verification)) as assoc:
            assert [c.abstract_syntax for c in assoc.accepted_contexts] == [CTImageStorage, Verification]
            assert assoc.send_c_echo().Status == 0
            with pytest.raises(ValueError, match="presentation context"):
                assoc.send_c_store(pydicom.dcmread(real_test_file("MR_small.dcm")))
            assert assoc.send_c_store(fake).Status == DATASET_MISMATCH
            assert assoc.send_c_store(pydicom.dcmread(ct_small)).Status == 0
    assert len(list((tmp_path / "spool" / "series").rglob("*.dcm"))) == 1
    assert not list((tmp_path / "spool" / "tmp").iterdir())


def test_allow_ae_rejects_other_calling_ae_titles(ct_small, tmp_path):
    with running_scp(Spool(tmp_path / "spool"), ScpConfig(port=0, allow_ae=["SCANNER"])) as scp:
        with association(scp.port, ae_title="INTRUDER") as assoc:
            assert assoc.is_rejected
        assert send(scp.port, [ct_small], ae_title="SCANNER") == [0]


def test_limits_refuse_large_instances_long_series_and_a_full_spool(series, tmp_path):
    size = len(series[0].read_bytes())
    with running_scp(Spool(tmp_path / "a"), ScpConfig(port=0, max_instance_bytes=size // 2)) as scp:
        with association(scp.port) as assoc:  # refused while it arrives: the association is aborted
            assert "Status" not in assoc.send_c_store(pydicom.dcmread(series[0]))
            wait_for(lambda: assoc.is_aborted, timeout=10, what="the abort")
    with running_scp(Spool(tmp_path / "b", max_instances=2)) as scp:  # a repeat of a stored one is still taken
        assert send(scp.port, [series[0], series[1], series[2], series[0]]) == [0, 0, OUT_OF_RESOURCES, 0]
    with running_scp(Spool(tmp_path / "c", max_bytes=int(size * 1.5))) as scp:
        assert send(scp.port, series[:2]) == [0, OUT_OF_RESOURCES]
    for name, kept in (("a", 0), ("b", 2), ("c", 1)):
        assert len(list((tmp_path / name / "series").rglob("*.dcm"))) == kept


def test_aborted_association_duplicates_and_a_late_instance_give_one_derived_series(build_series, tiny_model, tmp_path):
    files = sorted(build_series([0.0, 5.0, 10.0, 15.0], name="scanner", source=CT_SMALL).iterdir())
    out, spool_dir = tmp_path / "out", tmp_path / "spool"
    with running_node(spool_dir, tiny_model, [FolderDestination(out)], series_timeout=1.5) as port:
        with association(port) as assoc:
            for path in (files[0], files[1], files[1]):
                assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
            assoc.abort()  # mid-series
        assert send(port, files[:3]) == [0, 0, 0]  # the sender starts again, duplicates included
        wait_for(lambda: done_records(spool_dir), what="the series to be delivered")
        assert send(port, [files[3], files[0]]) == [0, 0]  # arrives after the series completed
        wait_for(lambda: len(done_records(spool_dir)) == 2, what="the late instances to be delivered")
    assert [r["instances"] for r in done_records(spool_dir)] == [3, 2]
    derived = [pydicom.dcmread(p) for p in out.rglob("*.dcm")]
    assert len(derived) == 4 and len({ds.SeriesInstanceUID for ds in derived}) == 1
    assert sorted(ds.SourceImageSequence[0].ReferencedSOPInstanceUID for ds in derived) == sorted(
        pydicom.dcmread(p).SOPInstanceUID for p in files)


def test_derived_uids_are_the_same_when_a_series_is_redone_and_differ_per_model(series, tiny_model, tmp_path):
    def derive(label: str, out: Path) -> list[tuple[str, str]]:
        SeriesDenoiser(prepare(tiny_model, SETTINGS, label=label))(series[0].parent, out)
        return sorted((ds.SeriesInstanceUID, ds.SOPInstanceUID) for ds in map(pydicom.dcmread, out.rglob("*.dcm")))

    first = derive(LABEL, tmp_path / "first")
    assert derive(LABEL, tmp_path / "again") == first
    sources = [pydicom.dcmread(p) for p in series]
    source_uids = [sources[0].SeriesInstanceUID] + [ds.SOPInstanceUID for ds in sources]
    other = {derived_uid_rule("other@0123456789ab", SETTINGS)(uid) for uid in source_uids}
    fp16 = {derived_uid_rule(LABEL, InferenceSettings(precision="fp16"))(uid) for uid in source_uids}
    half = {derived_uid_rule(LABEL, InferenceSettings(strength=0.5))(uid) for uid in source_uids}
    ours = {uid for pair in first for uid in pair}
    assert len(first) == 3 and all(len(uids) == 4 for uids in (ours, other, fp16, half))
    assert not ours & other and not ours & fp16 and not ours & half


def test_spool_recovery_after_a_kill_keeps_received_instances_and_drops_partial_files(ct_small, tmp_path):
    spool = Spool(tmp_path / "spool")
    source = pydicom.dcmread(ct_small)
    with spool.locked():
        entry = spool.store(ct_small.read_bytes(), lambda _path: (source.SeriesInstanceUID, source.SOPInstanceUID))
    (tmp_path / "spool" / "tmp" / "half-received.dcm").write_bytes(b"partial")
    instances = spool.instances_dir(entry)
    (instances / ".x.dcm.partial-1").write_bytes(b"partial")
    long_ago = time.time() - 3600
    os.utime(next(instances.glob("*.dcm")), (long_ago, long_ago))

    restarted = Spool(tmp_path / "spool")
    with restarted.locked():
        assert restarted.receiving() == {entry: pytest.approx(long_ago)}  # quiet for an hour: complete
        with pytest.raises(Exception, match="another ctdenoise serve"):
            with Spool(tmp_path / "spool").locked():
                pass
    assert [p.name for p in instances.iterdir()] == [f"{uid_hash(source.SOPInstanceUID)}.dcm"]
    assert not list((tmp_path / "spool" / "tmp").iterdir())


def test_status_command_prints_the_spool_as_json(series, tmp_path, capsys):
    spool = Spool(tmp_path / "spool")
    with running_scp(spool) as scp:
        send(scp.port, series[:2])
    assert main(["serve", "--spool", str(tmp_path / "spool"), "--status"]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["counts"] == {"pending": 1, "done": 0, "failed": 0}
    assert status["pending"][0]["stage"] == "receiving" and status["pending"][0]["instances"] == 2


def test_serve_without_a_destination_or_with_a_bad_limit_is_a_usage_error(tmp_path, capsys):
    assert main(["serve", "--spool", str(tmp_path / "spool")]) == 2
    assert "--output, --forward or --stow" in capsys.readouterr().err
    assert main(["serve", "--spool", str(tmp_path / "spool"), "--output", str(tmp_path), "--series-timeout", "0"]) == 2
    assert "--series-timeout must be positive" in capsys.readouterr().err
    assert main(["serve", "--spool", str(tmp_path / "spool"), "--forward", "PACS@host"]) == 2
    assert "AET@HOST:PORT" in capsys.readouterr().err
    assert main(["serve", "--spool", str(tmp_path / "spool"), "--output", str(tmp_path), "--ae-title", "A" * 17]) == 2
    assert "is not a DICOM AE title" in capsys.readouterr().err


def test_a_port_in_use_is_reported_before_anything_is_received(tiny_checkpoint, tmp_path, capsys):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["serve", "--spool", str(tmp_path / "spool"), "--output", str(tmp_path / "out"), "--port", str(port),
                     "--model", str(tiny_checkpoint), "--device", "cpu"])
    assert code == 2 and f"cannot listen on 127.0.0.1:{port}" in capsys.readouterr().err


@pytest.mark.skipif(not orthanc_available(), reason="needs the Debian packages orthanc and orthanc-dicomweb")
def test_pacs_down_for_a_while_then_up_gets_the_series_once_by_c_store_and_stow(series, tiny_model, tmp_path):
    pacs = Orthanc(tmp_path / "orthanc", dicom_port=free_port(), http_port=free_port())
    destinations = [CStoreDestination("ORTHANC", "127.0.0.1", pacs.dicom_port), StowDestination(pacs.stow_url)]
    spool_dir = tmp_path / "spool"
    with running_node(spool_dir, tiny_model, destinations) as port:
        assert send(port, series) == [0, 0, 0]

        def failed_attempts() -> bool:
            pending = spool_status(spool_dir)["pending"]
            return bool(pending) and all(d["attempts"] >= 2 and d["last_error"] and not d["confirmed"]
                                         for d in pending[0]["destinations"].values())

        wait_for(failed_attempts, what="failed delivery attempts while the PACS is down")
        with pacs:
            wait_for(lambda: done_records(spool_dir), what="delivery once the PACS is up")
            derived = pacs.series()
    # Both destinations are the same PACS: the second delivery stored the same SOP Instance UIDs again.
    assert len(derived) == 1 and len(derived[0]["Instances"]) == 3
    assert spool_status(spool_dir)["counts"] == {"pending": 0, "done": 1, "failed": 0}
