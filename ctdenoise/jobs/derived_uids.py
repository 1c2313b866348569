"""The UIDs of a derived series: computed from the source's UIDs and the derivation, never random.

A PACS keys instances on their SOP Instance UID and groups them by Series Instance UID. If every run
gave new random UIDs, a series re-done after a crash, received again by the node or denoised again by a
second ``ctdenoise denoise`` run would show up as a second copy. Computed UIDs make the same source,
model and pixel-changing settings give the same derived UIDs, which a PACS stores over the first copy,
while another model, strength, precision or backend gives other UIDs, a different derived series.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from pydicom.uid import generate_uid

from ctdenoise.inference import InferenceSettings, resolve_backend


def derivation_key(model_label: str, settings: InferenceSettings) -> str:
    """What identifies a derivation: the model (name and weights hash) and the settings that change pixels
    (strength, as a number: a strength table is resolved per series before this is called; precision; and
    the backend that runs: ``auto`` is resolved, :func:`ctdenoise.inference.resolve_backend`)."""
    return json.dumps({"model": model_label, "strength": settings.strength, "precision": settings.precision,
                       "backend": resolve_backend(settings)}, sort_keys=True)


def derived_uid_for(key: str) -> Callable[[str], str]:
    """The function mapping a source UID to its derived UID under derivation ``key`` (a pure function:
    the same source UID and key always give the same UID, different ones give different UIDs;
    ``pydicom.uid.generate_uid`` with both as entropy sources)."""
    def derived_uid(source_uid: str) -> str:
        return generate_uid(entropy_srcs=[key, source_uid])

    return derived_uid
