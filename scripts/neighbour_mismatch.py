"""How far a volume's anatomy is from the neighbouring-slice Noise2Noise assumption, measured on its clean slices.

Usage: ``python scripts/neighbour_mismatch.py VOLUME [VOLUME ...]`` (NIfTI/NRRD/MHA or a DICOM series folder).

``ctdenoise adapt --method neighbours`` trains slice ``z`` towards the mean of slices ``z-1`` and ``z+1``; that
target is the clean slice only if the anatomy is linear in z over two slice spacings. For each volume this prints
the RMS and the median absolute value (HU) of ``clean[z] - (clean[z-1] + clean[z+1]) / 2`` over the body
(> -500 HU) and over soft tissue (within 100 HU of 40 HU): compare them with the noise level of the series to be
adapted on. On a normal-dose volume the number includes the reference's own noise (times sqrt(1.5)).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from ctdenoise.io import read_volume


def neighbour_mismatch(hu: np.ndarray) -> dict[str, float]:
    """RMS and median absolute interpolation error (HU) of the middle slices of ``hu`` (slices, rows, cols)."""
    if hu.shape[0] < 3:
        raise ValueError(f"need at least 3 slices, got {hu.shape[0]}")
    volume = hu.astype(np.float64)
    middle = volume[1:-1]
    error = middle - (volume[:-2] + volume[2:]) / 2
    body = middle > -500
    soft = body & (np.abs(middle - 40) < 100)
    return {"body_rms_hu": float(np.sqrt(np.mean(error[body] ** 2))),
            "soft_tissue_rms_hu": float(np.sqrt(np.mean(error[soft] ** 2))),
            "soft_tissue_median_abs_hu": float(np.median(np.abs(error[soft])))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("volumes", nargs="+")
    args = parser.parse_args(argv)
    print("| volume | slice spacing (mm) | body RMS (HU) | soft tissue RMS (HU) | soft tissue median abs (HU) |")
    print("|---|---|---|---|---|")
    for path in args.volumes:
        volume = read_volume(path)
        m = neighbour_mismatch(volume.hu)
        print(f"| {path.rsplit('/', 1)[-1]} | {volume.spacing[0]:g} | {m['body_rms_hu']:.1f} | "
              f"{m['soft_tissue_rms_hu']:.1f} | {m['soft_tissue_median_abs_hu']:.1f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
