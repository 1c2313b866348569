"""``ctdenoise serve`` against senders that stop half-way, hold connections or send too much.

The node must not derive a series whose sender was cut off, must drop silent and idle connections and
bound the associations one peer holds, must refuse an oversized instance while it arrives (not after
buffering it), and must keep serving honest senders throughout. Servers listen on 127.0.0.1 and are
stopped by the test that started them.
"""

from __future__ import annotations

import pydicom

from test_serve import CT_SMALL, association, done_records, running_node, send, wait_for
from ctdenoise.serve.senders import FolderDestination
from ctdenoise.serve.spool import spool_status


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
