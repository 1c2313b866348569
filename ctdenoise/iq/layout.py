"""Where to measure in a phantom section: its circular inserts and the uniform ROIs for noise and the NPS.

:class:`Layout` holds both; :func:`uniform_rois` tiles a uniform region with square ROIs; :func:`find_layout`
finds the inserts and the uniform region of a physicist's own phantom from the ensemble mean of repeated scans
(or takes the inserts it is given) and says, naming the series, when the scans are not of a phantom.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ctdenoise.errors import ConfigError, InputError
from ctdenoise.iq.noise import Roi, as_spacing

#: Side of the square noise/NPS ROIs in mm (TG-233 uses ROIs of a few centimetres); at least 16 pixels.
ROI_SIZE_MM = 25.0
MIN_ROI_PX = 16
#: Inserts smaller than this diameter (mm) are not looked for (TG-233: the TTF needs a large circular edge).
MIN_INSERT_DIAMETER_MM = 10.0
#: Margin (mm) between a uniform ROI and the object's edge or an insert's edge.
UNIFORM_MARGIN_MM = 5.0
#: HU above which a pixel of the mean image belongs to the object (phantom) rather than the air around it.
OBJECT_THRESHOLD_HU = -500.0


@dataclass(frozen=True)
class Insert:
    """A circular insert: centre (``row``, ``col``) and ``radius_px`` in pixels, an optional ``name``."""

    row: float
    col: float
    radius_px: float
    name: str = ""


@dataclass(frozen=True)
class Layout:
    """The inserts whose TTF is measured and the uniform ROIs of the noise and NPS of one phantom section."""

    inserts: tuple[Insert, ...]
    rois: tuple[Roi, ...]

    def to_dict(self) -> dict:
        return {"inserts": [{"row": round(i.row, 2), "col": round(i.col, 2), "radius_px": round(i.radius_px, 2),
                             "name": i.name} for i in self.inserts],
                "rois": [list(map(int, roi)) for roi in self.rois]}


def roi_size_px(spacing_mm: float | Sequence[float], size_mm: float = ROI_SIZE_MM) -> int:
    """The ROI side in pixels for ``size_mm`` at ``spacing_mm``: even, at least :data:`MIN_ROI_PX`."""
    pixel = max(as_spacing(spacing_mm))
    return max(MIN_ROI_PX, 2 * int(round(size_mm / pixel / 2)))


def uniform_rois(uniform: np.ndarray, size: int) -> tuple[Roi, ...]:
    """Square ROIs of ``size`` pixels lying wholly inside the boolean mask ``uniform``, on a grid of half their
    size (neighbours overlap by half, as TG-233's NPS ROIs may) that has one ROI centred on the mask's centroid."""
    mask = np.asarray(uniform, dtype=bool)
    if not mask.any() or size > min(mask.shape):
        return ()
    table = np.pad(mask.astype(np.int64).cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    inside = table[size:, size:] - table[:-size, size:] - table[size:, :-size] + table[:-size, :-size] == size * size
    stride = max(1, size // 2)
    centre_row, centre_col = ndimage.center_of_mass(mask)
    row0 = int(round(centre_row - size / 2)) % stride
    col0 = int(round(centre_col - size / 2)) % stride
    return tuple(Roi(int(r), int(c), size) for r in range(row0, inside.shape[0], stride)
                 for c in range(col0, inside.shape[1], stride) if inside[r, c])


def object_mask(mean_image: np.ndarray) -> np.ndarray:
    """The largest connected region above :data:`OBJECT_THRESHOLD_HU`, holes filled (the phantom body)."""
    labels, count = ndimage.label(mean_image > OBJECT_THRESHOLD_HU)
    if count == 0:
        return np.zeros(mean_image.shape, dtype=bool)
    sizes = ndimage.sum_labels(np.ones_like(labels), labels, index=np.arange(1, count + 1))
    return ndimage.binary_fill_holes(labels == 1 + int(np.argmax(sizes)))


def _disk_distance(shape: tuple[int, int], insert: Insert) -> np.ndarray:
    rows, cols = np.indices(shape)
    return np.hypot(rows - insert.row, cols - insert.col)


def uniform_mask(body: np.ndarray, inserts: Sequence[Insert], margin_px: float, flat: np.ndarray | None = None) -> np.ndarray:
    """Pixels at least ``margin_px`` inside ``body`` and ``margin_px`` beyond every insert's edge (and in ``flat``)."""
    inner = ndimage.distance_transform_edt(np.pad(body, 1))[1:-1, 1:-1] > margin_px
    for insert in inserts:
        inner &= _disk_distance(body.shape, insert) > insert.radius_px + margin_px
    return inner & flat if flat is not None else inner


def _refine(deviation: np.ndarray, row: float, col: float, radius: float) -> tuple[float, float, float, float]:
    """Centre, radius and contrast of a blurred disk in ``deviation`` (image minus background) near (row, col):
    the centroid of the background-corrected signal in a circle around it and the radius whose disk holds its
    integral (blurring moves neither); two passes."""
    for _ in range(2):
        distance = np.hypot(*(np.indices(deviation.shape) - np.array([row, col])[:, None, None]))
        core = deviation[distance < 0.5 * radius]
        contrast = float(np.median(core))
        ring = (distance > radius + 3) & (distance < radius + 6)
        local = deviation - float(np.median(deviation[ring]))
        near = distance < radius + 3
        weight = np.clip(local[near] / contrast, 0.0, None)
        row = float(np.sum(weight * np.indices(deviation.shape)[0][near]) / weight.sum())
        col = float(np.sum(weight * np.indices(deviation.shape)[1][near]) / weight.sum())
        radius = float(np.sqrt(weight.sum() / np.pi))
    return row, col, radius, contrast


def find_inserts(mean_image: np.ndarray, body: np.ndarray, spacing_mm: float | Sequence[float],
                 threshold_hu: float) -> tuple[Insert, ...]:
    """Circular inserts of at least :data:`MIN_INSERT_DIAMETER_MM` inside ``body`` whose contrast to the body's
    median exceeds ``threshold_hu`` in the mean image smoothed by a 1-pixel Gaussian; centres and radii refined
    to sub-pixel (:func:`_refine`). Sorted by angle around the body's centre."""
    pixel = max(as_spacing(spacing_mm))
    margin = max(3.0, 3.0 / pixel)
    inner = ndimage.distance_transform_edt(np.pad(body, 1))[1:-1, 1:-1] > margin
    background = float(np.median(mean_image[inner]))
    deviation = ndimage.gaussian_filter(mean_image, 1.0) - background
    min_area = np.pi * (MIN_INSERT_DIAMETER_MM / 2.0 / pixel) ** 2 * 0.7
    found = []
    for sign in (1.0, -1.0):
        labels, count = ndimage.label((sign * deviation > threshold_hu) & inner)
        for index, region in enumerate(ndimage.find_objects(labels), start=1):
            component = labels[region] == index
            area = float(component.sum())
            if area < min_area:
                continue
            rows, cols = np.nonzero(component)
            row, col = rows.mean() + region[0].start, cols.mean() + region[1].start
            extent = np.hypot(rows + region[0].start - row, cols + region[1].start - col).max() + 0.5
            touches_edge = bool(np.any(~ndimage.binary_dilation(inner)[region][component]))
            if touches_edge or area < 0.6 * np.pi * extent**2:
                continue  # not a round insert inside the object
            radius = np.sqrt(area / np.pi)
            if min(row, col) - radius - 12 < 0 or max(row - mean_image.shape[0], col - mean_image.shape[1]) + radius + 12 > 0:
                continue
            found.append(Insert(*_refine(deviation, row, col, radius)[:3]))
    centre = ndimage.center_of_mass(body)
    return tuple(sorted(found, key=lambda i: np.arctan2(i.row - centre[0], i.col - centre[1])))


def find_layout(
    realisations: np.ndarray,
    spacing_mm: float | Sequence[float],
    *,
    inserts: Sequence[Insert] | None = None,
    roi_size_mm: float = ROI_SIZE_MM,
    source: str | None = None,
) -> Layout:
    """The inserts and uniform ROIs of repeated scans (n, rows, cols) of one phantom section, in HU.

    The object is the largest region above :data:`OBJECT_THRESHOLD_HU` in the ensemble mean. Unless ``inserts``
    are given, :func:`find_inserts` finds them at a threshold of five times the noise of the smoothed mean image
    (at least 5 HU). The uniform region is the object eroded by :data:`UNIFORM_MARGIN_MM`, away from every insert
    by as much, where the smoothed mean stays within that threshold of the background; it is tiled with ROIs of
    ``roi_size_mm`` (halved down to :data:`MIN_ROI_PX` pixels until at least one fits). InputError naming
    ``source`` when there is no object, no uniform region, or the scans differ by more than noise (not repeated
    scans of one section).
    """
    stack = np.asarray(realisations, dtype=np.float64)
    spacing = as_spacing(spacing_mm)
    pixel = max(spacing)
    mean = stack.mean(axis=0)
    body = object_mask(mean)
    if body.sum() < (MIN_INSERT_DIAMETER_MM * 3 / pixel) ** 2:
        raise InputError(source, "no phantom found: the mean image holds no object above -500 HU of 3 cm or more")
    n = stack.shape[0]
    inner = ndimage.distance_transform_edt(np.pad(body, 1))[1:-1, 1:-1] > UNIFORM_MARGIN_MM / pixel
    difference = (stack[0] - mean) * np.sqrt(n / (n - 1.0)) if n > 1 else np.zeros_like(mean)
    smoothed_noise = 1.4826 * np.median(np.abs(ndimage.gaussian_filter(difference, 1.0)[inner])) / np.sqrt(n)
    threshold = max(5.0, 5.0 * smoothed_noise)
    if inserts is None:
        inserts = find_inserts(mean, body, spacing, threshold)
    else:
        inserts = tuple(inserts)
        for insert in inserts:
            if not (0 <= insert.row < mean.shape[0] and 0 <= insert.col < mean.shape[1]) or insert.radius_px < 2:
                raise ConfigError("insert", f"({insert.row}, {insert.col}) radius {insert.radius_px} px lies outside "
                                  f"the {mean.shape[0]}x{mean.shape[1]} image or is smaller than 2 pixels")
    background = float(np.median(mean[inner]))
    flat = np.abs(ndimage.gaussian_filter(mean, 1.0) - background) < threshold
    uniform = uniform_mask(body, inserts, UNIFORM_MARGIN_MM / pixel, flat)
    size = roi_size_px(spacing, roi_size_mm)
    rois: tuple[Roi, ...] = ()
    while not rois and size >= MIN_ROI_PX:
        rois = uniform_rois(uniform, size)
        size //= 2
    if not rois:
        raise InputError(source, f"no uniform region of {MIN_ROI_PX}x{MIN_ROI_PX} pixels or more found in the phantom "
                         f"away from its inserts and edges (is this a phantom scan?)")
    return Layout(tuple(inserts), rois)
