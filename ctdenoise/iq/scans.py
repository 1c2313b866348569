"""A physicist's repeated scans of a phantom: DICOM series (or volumes) whose every slice is one realisation of
the same section, read with :func:`ctdenoise.io.read_volume` and checked before anything is measured."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctdenoise.errors import InputError
from ctdenoise.iq.layout import Layout, object_mask
from ctdenoise.iq.noise import measure_noise, noise_only_images

#: Fewer realisations than this (all series together) cannot give noise-only images.
MIN_REALISATIONS = 2
#: A pixel of a noise-only image beyond this many noise standard deviations is not noise.
OUTLIER_SIGMAS = 8.0
#: A series with more such pixels (fraction of the object) is not a repeat of the same section.
MAX_OUTLIER_FRACTION = 0.005


@dataclass(frozen=True)
class RepeatedScans:
    """Realisations (n, rows, cols) in HU, their pixel ``spacing_mm`` (row, col) and, per realisation, the
    series it came from (``origin``)."""

    hu: np.ndarray
    spacing_mm: tuple[float, float]
    origin: tuple[str, ...]

    @property
    def series(self) -> list[str]:
        return list(dict.fromkeys(self.origin))


def read_scans(sources: Sequence[str | Path], workers: int | None = None) -> RepeatedScans:
    """Every slice of every series in ``sources`` (DICOM series folders or files, NIfTI/NRRD/MHA) as one
    realisation. InputError naming the series when its slices differ in size or pixel spacing from the first
    series' or when there are fewer than :data:`MIN_REALISATIONS` slices in all. ``workers``: processes that decode
    a series' files (:func:`ctdenoise.io.read_volume`)."""
    from ctdenoise.io import read_volume

    stacks, origin = [], []
    spacing: tuple[float, float] | None = None
    shape: tuple[int, int] | None = None
    for source in sources:
        volume = read_volume(source, workers=workers)
        here = (float(volume.spacing[1]), float(volume.spacing[2]))
        if shape is None or spacing is None:  # the first series sets both
            shape, spacing = volume.hu.shape[1:], here
        elif volume.hu.shape[1:] != shape or not np.allclose(here, spacing, rtol=1e-3):
            raise InputError(source, f"its slices are {volume.hu.shape[1]}x{volume.hu.shape[2]} pixels of "
                             f"{here[0]:g} x {here[1]:g} mm, the first series' {shape[0]}x{shape[1]} of "
                             f"{spacing[0]:g} x {spacing[1]:g} mm: not repeated scans of the same section")
        stacks.append(volume.hu)
        origin += [str(source)] * volume.hu.shape[0]
    hu = np.concatenate(stacks).astype(np.float32)
    if hu.shape[0] < MIN_REALISATIONS:
        raise InputError(sources[0], f"holds {hu.shape[0]} slice(s); the noise of repeated scans needs at least "
                         f"{MIN_REALISATIONS} realisations (every slice of every --scan series is one)")
    assert spacing is not None
    return RepeatedScans(hu, spacing, tuple(origin))


def check_repeated(scans: RepeatedScans, layout: Layout) -> None:
    """InputError naming the series whose slices differ by more than noise: more than
    :data:`MAX_OUTLIER_FRACTION` of the object's pixels beyond :data:`OUTLIER_SIGMAS` noise standard deviations
    (measured in ``layout.rois``) from the mean of the other series' scans (of all scans when there is one series).
    Repeated scans of one phantom section differ by noise only; other anatomy, another section or a moved phantom
    do not. Of several such series the one that differs most is named."""
    noise = noise_only_images(scans.hu)
    sigma = max(measure_noise(noise, layout.rois), 1e-3)
    body = object_mask(scans.hu.mean(axis=0))
    origin = np.array(scans.origin)
    fractions: dict[str, float] = {}
    for series in scans.series:
        mine = origin == series
        if mine.all():
            difference = noise[:, body]
        else:  # x - mean of m others has variance sigma^2 (1 + 1/m)
            others = scans.hu[~mine].astype(np.float64)
            difference = (scans.hu[mine][:, body] - others.mean(axis=0)[body]) / np.sqrt(1.0 + 1.0 / len(others))
        fractions[series] = float((np.abs(difference) > OUTLIER_SIGMAS * sigma).mean())
    worst = max(fractions, key=fractions.__getitem__)
    if fractions[worst] > MAX_OUTLIER_FRACTION:
        compared = "the other series' scans" if len(fractions) > 1 else "the mean of its scans"
        raise InputError(worst, f"its slices differ from {compared} by more than {OUTLIER_SIGMAS:g} times the noise ({sigma:.1f} HU) in "
                         f"{100 * fractions[worst]:.1f} % of the phantom: not repeated scans of the same phantom section")
