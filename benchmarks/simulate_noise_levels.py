"""Noise level and speed of the physics-based low-dose simulation on a water cylinder.

Simulates a noise-free 200 mm water cylinder (512 x 512, 0.7 mm pixels) at dose fractions
1, 0.5, 0.25 and 0.1 with the library defaults (I0, electronic noise, views, Hann filter) and reports
the noise std and mean in a central 40 mm radius ROI, both for the full dose-k noise (noise-free input)
and for the excess noise that is added to a real scan (``input_has_noise=True``), plus the time to
simulate one 512 x 512 slice. With pydicom-data installed it also scores a simulated quarter dose of
the real 512 x 512 slice ``693_UNCR.dcm`` against the slice itself under the ``redcnn`` protocol
(to compare with the literature's ~29 dB / 0.87 for real Mayo-2016 quarter dose).

    python benchmarks/simulate_noise_levels.py results.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
from pydicom.data import get_testdata_file

from ctdenoise.evaluate import compute_metrics
from ctdenoise.io import read_volume
from ctdenoise.simulate import (
    DEFAULT_ELECTRONIC_NOISE_VAR,
    DEFAULT_I0,
    DEFAULT_N_VIEWS,
    simulate_low_dose,
)

SIZE = 512
SPACING_MM = 0.7
CYLINDER_DIAMETER_MM = 200.0
ROI_RADIUS_MM = 40.0
DOSES = (1.0, 0.5, 0.25, 0.1)


def water_cylinder() -> tuple[np.ndarray, np.ndarray]:
    """The phantom in HU and the boolean mask of the central ROI."""
    rows, cols = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    radius_mm = np.hypot(rows, cols) * SPACING_MM
    return np.where(radius_mm <= CYLINDER_DIAMETER_MM / 2, 0.0, -1000.0), radius_mm <= ROI_RADIUS_MM


def real_slice_quarter_dose() -> dict | None:
    """redcnn-protocol scores of a simulated quarter dose of 693_UNCR.dcm, or None without pydicom-data."""
    path = get_testdata_file("693_UNCR.dcm", download=False)
    if path is None:
        return None
    volume = read_volume(path)
    quarter = simulate_low_dose(volume.hu, (volume.spacing[1], volume.spacing[2]), dose_fraction=0.25, seed=0)
    scores = compute_metrics(quarter[0], volume.hu[0], "redcnn")
    return {"file": "693_UNCR.dcm", "dose_fraction": 0.25, "seed": 0, **scores}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", help="JSON file to write")
    args = parser.parse_args()

    phantom, roi = water_cylinder()
    start = time.perf_counter()
    simulate_low_dose(phantom, SPACING_MM, seed=0)
    first_call_s = time.perf_counter() - start  # includes building the projector tables
    timings = []
    for seed in range(3):
        start = time.perf_counter()
        simulate_low_dose(phantom, SPACING_MM, seed=seed)
        timings.append(time.perf_counter() - start)

    rows = []
    for dose in DOSES:
        full = simulate_low_dose(phantom, SPACING_MM, dose_fraction=dose, input_has_noise=False, seed=1)
        excess = simulate_low_dose(phantom, SPACING_MM, dose_fraction=dose, seed=1)
        rows.append(
            {
                "dose_fraction": dose,
                "noise_std_hu": float(full[roi].std()),
                "mean_hu": float(full[roi].mean()),
                "excess_noise_std_hu": float(excess[roi].std()),
            }
        )

    result = {
        "phantom": f"water cylinder {CYLINDER_DIAMETER_MM:.0f} mm, {SIZE}x{SIZE} px of {SPACING_MM} mm",
        "roi_radius_mm": ROI_RADIUS_MM,
        "i0": DEFAULT_I0,
        "electronic_noise_var": DEFAULT_ELECTRONIC_NOISE_VAR,
        "n_views": DEFAULT_N_VIEWS,
        "filter": "hann",
        "seconds_per_slice_median": float(np.median(timings)),
        "seconds_first_call": first_call_s,
        "cpu_count": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "noise": rows,
        "real_slice_quarter_dose": real_slice_quarter_dose(),
    }
    print(f"{result['phantom']}, I0={DEFAULT_I0:g}, se^2={DEFAULT_ELECTRONIC_NOISE_VAR:g},"
          f" {DEFAULT_N_VIEWS} views")
    print(f"time per slice: {result['seconds_per_slice_median']:.3f} s (first call {first_call_s:.3f} s)")
    header = ("dose", "std HU (noise-free input)", "ratio to k=1", "mean HU", "added std HU (real scan)")
    print(f"{header[0]:>6} {header[1]:>26} {header[2]:>13} {header[3]:>8} {header[4]:>25}")
    for row in rows:
        ratio = row["noise_std_hu"] / rows[0]["noise_std_hu"]
        print(
            f"{row['dose_fraction']:>6.2f} {row['noise_std_hu']:>26.2f} {ratio:>13.2f}"
            f" {row['mean_hu']:>8.2f} {row['excess_noise_std_hu']:>25.2f}"
        )
    real = result["real_slice_quarter_dose"]
    if real is not None:
        print(f"simulated quarter dose of {real['file']} vs itself ({real['protocol']}): "
              f"PSNR {real['psnr']:.2f} dB, SSIM {real['ssim']:.3f}, RMSE {real['rmse_hu']:.1f} HU")
    with open(args.output, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=2)


if __name__ == "__main__":
    main()
