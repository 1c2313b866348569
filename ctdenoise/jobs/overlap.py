"""Denoising one volume while its output is written: compute and write overlapped, within one series.

:func:`denoise_while_writing` runs the writer in a background thread on the output array as the model
fills it: the writer waits (:class:`SliceGate`) for each slice only until that slice is computed, so a
DICOM series' files are encoded and written while the model works on the later slices, and the time
for one series approaches ``read + max(compute, write)`` rather than ``read + compute + write``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import numpy as np
import torch

from ctdenoise.io import Volume
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.prepare import PreparedModel
from ctdenoise.runtime.settings import InferenceSettings

T = TypeVar("T")


class ComputeAborted(RuntimeError):
    """Raised in the writer thread when the computation it waits for failed or was stopped."""


class SliceGate:
    """How many leading slices of an output array are final; writers wait on it slice by slice."""

    def __init__(self) -> None:
        self._done = 0
        self._aborted = False
        self._condition = threading.Condition()

    def advance(self, slices: int) -> None:
        """Mark the next ``slices`` slices final and wake the waiting writer."""
        with self._condition:
            self._done += slices
            self._condition.notify_all()

    def abort(self) -> None:
        """The computation stopped: every present and future :meth:`wait_for` of an unfinished slice raises."""
        with self._condition:
            self._aborted = True
            self._condition.notify_all()

    def wait_for(self, index: int) -> None:
        """Block until slice ``index`` is final; :class:`ComputeAborted` if the computation stopped first."""
        with self._condition:
            self._condition.wait_for(lambda: self._done > index or self._aborted)
            if self._done <= index:
                raise ComputeAborted(f"slice {index} was never computed")


def denoise_while_writing(
    model: PreparedModel | torch.nn.Module,
    volume: Volume,
    settings: InferenceSettings,
    write: Callable[[np.ndarray, Callable[[int], None]], T],
    progress: Callable[[int], None] | None = None,
) -> T:
    """Denoise ``volume`` and run ``write(hu, slice_ready)`` on the result at the same time; return what
    ``write`` returned.

    ``write`` runs in a background thread with the (still filling) float32 output array and a
    ``slice_ready(k)`` that blocks until slice ``k`` is final (for example a call of
    :func:`ctdenoise.io.write_volume` passing both on). Errors keep their meaning: a failed computation
    stops the writer and is raised; a failed writer stops the computation after its current batch and
    its error is raised. ``progress`` is called as in :func:`ctdenoise.runtime.denoise.denoise_hu`.
    """
    output = np.empty(volume.hu.shape, dtype=np.float32)
    gate = SliceGate()
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="ctdenoise-write") as pool:
        written = pool.submit(write, output, gate.wait_for)

        def computed(slices: int) -> None:
            gate.advance(slices)
            if progress is not None:
                progress(slices)
            failed = written.exception() if written.done() else None
            if failed is not None:
                raise failed  # the writer failed: computing the rest is wasted

        try:
            denoise_hu(model, volume.hu, settings, computed, out=output)
        except BaseException:
            gate.abort()
            failed = written.exception() if written.done() else None
            if failed is not None:
                raise failed from None
            raise
        return written.result()
