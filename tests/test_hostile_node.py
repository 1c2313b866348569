"""``ctdenoise serve`` against senders that stop half-way, hold connections or send too much.

The node must not derive a series whose sender was cut off, must drop silent and idle connections and
bound the associations one peer holds, must refuse an oversized instance while it arrives (not after
buffering it), and must keep serving honest senders throughout. Servers listen on 127.0.0.1 and are
stopped by the test that started them.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import tracemalloc
from concurrent.futures import ThreadPoolExecutor

import pydicom
import pytest
from pynetdicom.sop_class import CTImageStorage, Verification

from conftest import real_test_file
from ctdenoise.serve.guard import AssociationLimits
from ctdenoise.serve.scp import ScpConfig
from ctdenoise.serve.senders import FolderDestination
from ctdenoise.serve.spool import Spool, spool_status
from test_serve import CT_SMALL, association, done_records, running_node, running_scp, send, series, wait_for  # noqa: F401 - series is a fixture


def test_a_series_whose_sender_aborted_half_way_is_not_delivered_as_complete(build_series, tiny_model, tmp_path):
    files = sorted(build_series([5.0 * k for k in range(10)], name="scanner", source=CT_SMALL).iterdir())
    out, spool_dir = tmp_path / "out", tmp_path / "spool"
    with running_node(spool_dir, tiny_model, [FolderDestination(out)], series_timeout=0.5) as port:
        with association(port) as assoc:
            for path in files[:9]:  # in position order: the 9 slices alone form a regular stack
                assert assoc.send_c_store(pydicom.dcmread(path)).Status == 0
            assoc.abort()
        failed = wait_for(lambda: spool_status(spool_dir)["failed"], what="the partial series to fail")
        assert failed[0]["instances"] == 9 and "aborted" in failed[0]["error"]
        assert not out.exists() and not done_records(spool_dir)
        assert send(port, files) == [0] * 10  # the sender sends it again, whole
        wait_for(lambda: done_records(spool_dir), what="the whole series to be delivered")
    assert done_records(spool_dir)[0]["derived"] == 10 and len(list(out.rglob("*.dcm"))) == 10


def wait_until_no_association(scp) -> None:
    """Wait for pynetdicom to end the threads of closed or released associations: it counts them against the
    limits until they have ended, a moment after the peer sees the connection closed."""
    wait_for(lambda: not scp.ae.active_associations, timeout=10, what="the closed associations' threads to end")


def limited(**limits) -> ScpConfig:
    return ScpConfig(port=0, limits=AssociationLimits(**limits))


def test_silent_connections_are_closed_and_do_not_lock_senders_out(ct_small, tmp_path):
    with running_scp(Spool(tmp_path / "spool"), limited(max_associations=3, acse_timeout=1.0)) as scp:
        silent = [socket.create_connection(("127.0.0.1", scp.port)) for _ in range(5)]  # more than the limit
        try:
            for sock in silent:
                sock.settimeout(10)
                assert sock.recv(1) == b""  # closed by the node after --acse-timeout
            wait_until_no_association(scp)
            assert send(scp.port, [ct_small]) == [0]
        finally:
            for sock in silent:
                sock.close()


def test_an_association_kept_alive_with_c_echo_but_storing_nothing_is_aborted(ct_small, tmp_path):
    with running_scp(Spool(tmp_path / "spool"), limited(idle_timeout=1.0)) as scp:
        with association(scp.port, contexts=(CTImageStorage, Verification)) as assoc:
            assert assoc.send_c_store(pydicom.dcmread(ct_small)).Status == 0
            deadline = time.monotonic() + 10
            while assoc.is_established and time.monotonic() < deadline:
                assoc.send_c_echo()
                time.sleep(0.2)
            assert assoc.is_aborted
        assert send(scp.port, [ct_small]) == [0]
    [entry] = (tmp_path / "spool" / "series").iterdir()
    assert not json.loads((entry / "state.json").read_text())["interrupted"]  # it had finished its instances


def test_one_peer_cannot_hold_more_than_its_share_of_associations(ct_small, tmp_path):
    with running_scp(Spool(tmp_path / "spool"), limited(max_per_peer=2)) as scp:
        with association(scp.port) as first, association(scp.port) as second:
            assert first.is_established and second.is_established
            with association(scp.port) as third:
                assert third.is_rejected
        wait_until_no_association(scp)
        assert send(scp.port, [ct_small]) == [0]  # the first two were released: room again


def test_many_honest_concurrent_senders_all_get_through(ct_small, tmp_path):
    with running_scp(Spool(tmp_path / "spool")) as scp:  # the defaults
        with ThreadPoolExecutor(24) as pool:
            statuses = list(pool.map(lambda _: send(scp.port, [ct_small]), range(24)))
    assert statuses == [[0]] * 24


SENDER = """
import sys, time, pydicom
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
ds = pydicom.dcmread(sys.argv[2])
ds.add_new(0x00091010, "OB", bytes(40 * 1024 * 1024))  # a 40 MB private element
ae = AE(ae_title="SCANNER")
ae.add_requested_context(CTImageStorage)
assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title="CTDENOISE")
status = assoc.send_c_store(ds) if assoc.is_established else None
for _ in range(100):  # the node's abort may reach this side's state a moment after the call returned
    if not assoc.is_established:
        break
    time.sleep(0.05)
print("stored" if status and status.Status == 0 else "not-stored", "established" if assoc.is_established else "ended")
"""


def test_an_oversized_instance_is_refused_while_it_arrives_not_buffered_whole(ct_small, tmp_path):
    """The sender runs in another process, so the traced peak is the node's own memory."""
    limit = 2 * 1024 * 1024
    with running_scp(Spool(tmp_path / "spool"), ScpConfig(port=0, max_instance_bytes=limit)) as scp:
        tracemalloc.start()
        try:
            result = subprocess.run([sys.executable, "-c", SENDER, str(scp.port), str(ct_small)],
                                    capture_output=True, text=True, timeout=120)
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert result.stdout.split() == ["not-stored", "ended"], result.stdout + result.stderr
        assert peak < 4 * limit, f"the node buffered {peak} bytes for a {limit}-byte limit"
        assert send(scp.port, [ct_small]) == [0]  # and goes on serving


def test_the_limits_come_from_the_options_or_the_config_file_and_reach_the_scp(tmp_path, tiny_checkpoint, capsys):
    from ctdenoise.cli import build_parser, main
    from ctdenoise.cli.config_file import apply_config_file
    from ctdenoise.cli.serve import build_node, config_options

    config = tmp_path / "node.yaml"
    config.write_text(f"spool: {tmp_path / 'spool'}\noutput: {tmp_path / 'out'}\nmax_associations_per_peer: 4\n"
                      f"idle_timeout: 5\nmodel: {tiny_checkpoint}\ndevice: cpu\n")
    args = build_parser(["serve"]).parse_args(["serve", "--config", str(config), "--max-associations", "8"])
    apply_config_file(args, config_options(), config)
    limits = build_node(args).scp.config.limits
    assert limits == AssociationLimits(max_associations=8, max_per_peer=4, acse_timeout=10.0, network_timeout=60.0,
                                       idle_timeout=5.0)
    assert main(["serve", "--config", str(config), "--idle-timeout", "0"]) == 2
    assert "--idle-timeout must be positive" in capsys.readouterr().err


@pytest.mark.slow  # sends a 300 MB instance
def test_the_node_s_peak_memory_stays_near_the_instance_limit_for_a_huge_instance(tmp_path):
    """A 300 MB instance against a 20 MB limit: the SCP's peak RSS grows by well under 100 MB (it grew by
    about 300 MB when the whole instance was buffered before the size check)."""
    result = subprocess.run([sys.executable, "-c", PEAK_RSS, str(tmp_path), str(real_test_file(CT_SMALL))],
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    growth_mb = float(result.stdout.split()[-1])
    assert growth_mb < 100, result.stdout


PEAK_RSS = """
import resource, subprocess, sys
from ctdenoise.serve.scp import ScpConfig, StorageSCP
from ctdenoise.serve.spool import Spool
SENDER = '''
import sys, pydicom
from pynetdicom import AE
from pynetdicom.sop_class import CTImageStorage
ds = pydicom.dcmread(sys.argv[2])
ds.add_new(0x00091010, "OB", bytes(300 * 1024 * 1024))
ae = AE(ae_title="SCANNER")
ae.add_requested_context(CTImageStorage)
assoc = ae.associate("127.0.0.1", int(sys.argv[1]), ae_title="CTDENOISE")
if assoc.is_established:
    assoc.send_c_store(ds)
'''
spool = Spool(sys.argv[1] + "/spool")
scp = StorageSCP(spool, ScpConfig(port=0, max_instance_bytes=20 * 1024 * 1024))
with spool.locked():
    scp.start()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    subprocess.run([sys.executable, "-c", SENDER, str(scp.port), sys.argv[2]], check=True)
    after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    scp.stop()
print("peak RSS growth MB", (after - before) / 1024)
"""


def test_the_node_delivers_a_good_series_while_silent_and_idle_connections_are_held(series, tiny_model, tmp_path):  # noqa: F811 - the fixture
    series_files = series
    out, spool_dir = tmp_path / "out", tmp_path / "spool"
    limits = AssociationLimits(max_associations=4, acse_timeout=1.0, idle_timeout=1.0)
    with running_node(spool_dir, tiny_model, [FolderDestination(out)], limits=limits) as port:
        with association(port, contexts=(CTImageStorage, Verification)) as idle:
            assert idle.is_established and idle.send_c_echo().Status == 0  # then it stores nothing
            silent = [socket.create_connection(("127.0.0.1", port)) for _ in range(6)]  # more than the limit
            try:
                statuses = wait_for(lambda: _send_or_none(port, series_files), timeout=30,
                                    what="an honest sender to get through")
                assert statuses == [0] * len(series_files)
                wait_for(lambda: done_records(spool_dir), what="the series to be delivered")
            finally:
                for sock in silent:
                    sock.close()
    assert len(list(out.rglob("*.dcm"))) == len(series_files)


def _send_or_none(port: int, files) -> list[int] | None:
    """``send``'s statuses, or None while the node rejects the association (a sender retries)."""
    with association(port) as assoc:
        return [assoc.send_c_store(pydicom.dcmread(path)).Status for path in files] if assoc.is_established else None
