"""When a received series is complete: after a quiet period in which no instance of it arrived.

DICOM has no "end of series" message; routers (mercure, Orthanc's "stable series" event) wait until a
series has been quiet for a while. The arrival times are kept by the spool (after a restart, the files'
modification times), so a series received before a kill completes after the restart.
"""

from __future__ import annotations

from collections.abc import Mapping


def quiet_entries(last_arrivals: Mapping[str, float], now: float, timeout: float) -> list[str]:
    """Ids of the entries whose last instance arrived at least ``timeout`` seconds before ``now``, oldest first."""
    quiet = [(arrived, entry) for entry, arrived in last_arrivals.items() if now - arrived >= timeout]
    return [entry for _, entry in sorted(quiet)]
