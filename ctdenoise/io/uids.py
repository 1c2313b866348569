"""Every DICOM UID ctdenoise makes: one root, random UIDs for new objects, and the derived-UID rule.

All UIDs are made under :data:`UID_ROOT` (pydicom's root) by :func:`pydicom.uid.generate_uid`:

* :func:`new_uid`: a new random UID (a new object or series with nothing to derive it from: the example
  series, benchmark inputs, a derived series written without a rule).
* :data:`INSTANCE_CREATOR_UID`: the one fixed UID naming ctdenoise as the creator of the objects it writes.
* :func:`derived_uid_for` and :func:`derivation_key`: the UIDs of a derived series, computed from the source's
  UIDs and the derivation, never random. A PACS keys instances on their SOP Instance UID and groups them by
  Series Instance UID. If every run gave new random UIDs, a series re-done after a crash, received again by
  the node or denoised again by a second ``ctdenoise denoise`` run would show up as a second copy. Computed
  UIDs make the same source, model and pixel-changing settings give the same derived UIDs, which a PACS
  stores over the first copy, while another model, strength, precision or backend gives other UIDs, a
  different derived series.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pydicom.uid import PYDICOM_ROOT_UID, generate_uid

UID_ROOT = PYDICOM_ROOT_UID
"""The root of every UID ctdenoise makes."""

INSTANCE_CREATOR_UID = generate_uid(prefix=UID_ROOT, entropy_srcs=["ctdenoise derived-series writer"])
"""InstanceCreatorUID of every object ctdenoise writes: one fixed UID naming ctdenoise."""


def new_uid() -> str:
    """A new random UID under :data:`UID_ROOT`."""
    return generate_uid(prefix=UID_ROOT)


def derivation_key(model_label: str, *, strength: float, precision: str, backend: str) -> str:
    """What identifies a derivation: the model (name and weights hash) and the settings that change pixels:
    ``strength`` as a number (a strength table is resolved per series before this is called), ``precision``
    and the ``backend`` that runs (resolved: never ``auto``; :func:`ctdenoise.runtime.prepare.resolve_backend`)."""
    return json.dumps({"model": model_label, "strength": strength, "precision": precision, "backend": backend},
                      sort_keys=True)


def derived_uid_for(key: str) -> Callable[[str], str]:
    """The function mapping a source UID to its derived UID under derivation ``key`` (a pure function:
    the same source UID and key always give the same UID, different ones give different UIDs; both are
    :func:`pydicom.uid.generate_uid`'s entropy sources under :data:`UID_ROOT`)."""
    def derived_uid(source_uid: str) -> str:
        return generate_uid(prefix=UID_ROOT, entropy_srcs=[key, source_uid])

    return derived_uid
