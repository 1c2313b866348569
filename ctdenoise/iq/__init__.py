"""Image quality as CT physicists measure it (AAPM TG-233): noise, NPS, TTF and detectability.

Measurements on repeated scans of a phantom section (each function's docstring cites its method):

* :func:`noise_only_images`, :func:`measure_noise`: noise magnitude in uniform ROIs;
* :func:`nps_2d`, :func:`radial_nps`: noise texture, the NPS in HU^2 mm^2 against cycles/mm, ``f_av``, ``f_peak``;
* :func:`ttf_circular_insert`: sharpness per contrast, the TTF of a circular insert, TTF50 and TTF10;
* :func:`dprime_npw`, :func:`dprime_npwe`, :func:`dose_reduction`: detectability of a disk and the
  dose-reduction potential of a method.

Inputs: :class:`DigitalPhantom` (a water cylinder with rods of known contrast and known blur) and
:func:`find_layout` (the inserts and uniform ROIs of a physicist's own phantom scans).
"""

from ctdenoise.iq.detectability import DiskTask, DoseReduction, EyeFilter, dose_reduction, dprime_npw, dprime_npwe
from ctdenoise.iq.layout import Insert, Layout, find_layout, uniform_rois
from ctdenoise.iq.noise import NPS2D, RadialNPS, Roi, measure_noise, noise_only_images, nps_2d, radial_nps, roi_stack
from ctdenoise.iq.phantom import DEFAULT_RODS, DigitalPhantom, Rod, blurred_disk
from ctdenoise.iq.ttf import TTF, ttf_circular_insert

__all__ = [
    "DEFAULT_RODS",
    "NPS2D",
    "TTF",
    "DigitalPhantom",
    "DiskTask",
    "DoseReduction",
    "EyeFilter",
    "Insert",
    "Layout",
    "RadialNPS",
    "Roi",
    "Rod",
    "blurred_disk",
    "dose_reduction",
    "dprime_npw",
    "dprime_npwe",
    "find_layout",
    "measure_noise",
    "noise_only_images",
    "nps_2d",
    "radial_nps",
    "roi_stack",
    "ttf_circular_insert",
    "uniform_rois",
]
