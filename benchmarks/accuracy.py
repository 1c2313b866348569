"""Accuracy of the fast inference path against fp32 eager on a real 512x512 CT slice, per precision.

Budget (performance issue): mean |dHU| <= 0.5 and max |dHU| <= 3 against the fp32 eager output of the
same weights. Slice: pydicom-data's 693_UNCR.dcm. Prints a table and writes JSON; decides nothing itself
(the defaults in ``ctdenoise.accelerate.resolve_precision`` follow its results).

Usage: python benchmarks/accuracy.py OUT.json [--model auto|random|PATH] [--precisions fp32,bf16,fp16]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.data import get_testdata_file

from common import environment, load_benchmark_model, write_json
from ctdenoise.accelerate import prepare_model
from ctdenoise.intensity import hu_to_unit, unit_to_hu

MEAN_BUDGET_HU, MAX_BUDGET_HU = 0.5, 3.0
SLICE_FILE = "693_UNCR.dcm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--model", default="auto")
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    args = parser.parse_args()
    model, label = load_benchmark_model(args.model)
    ds = pydicom.dcmread(get_testdata_file(SLICE_FILE, download=False))
    hu = (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.float32)
    unit = hu_to_unit(torch.from_numpy(hu))[None, None]
    env = environment(torch.device("cpu"))
    with torch.inference_mode():
        eager = unit_to_hu(model.eval()(unit))[0, 0].numpy()
        rows = []
        for precision in args.precisions.split(","):
            fast = prepare_model(model, "cpu", precision)
            start = time.perf_counter()
            out = unit_to_hu(fast(unit))[0, 0].numpy()
            seconds = time.perf_counter() - start
            error = np.abs(out - eager)
            rows.append({
                "precision": precision, "mean_abs_dhu": round(float(error.mean()), 4),
                "max_abs_dhu": round(float(error.max()), 4), "p99_abs_dhu": round(float(np.percentile(error, 99)), 4),
                "within_budget": bool(error.mean() <= MEAN_BUDGET_HU and error.max() <= MAX_BUDGET_HU),
                "seconds_cpu_one_call": round(seconds, 3),
            })
    print(f"{'precision':<10}{'mean|dHU|':>11}{'max|dHU|':>10}{'p99':>8}{'budget':>8}")
    for r in rows:
        print(f"{r['precision']:<10}{r['mean_abs_dhu']:>11.4f}{r['max_abs_dhu']:>10.3f}{r['p99_abs_dhu']:>8.3f}"
              f"{'ok' if r['within_budget'] else 'NO':>8}")
    write_json(args.out, {
        "benchmark": "accuracy", "model": label, "slice": SLICE_FILE,
        "budget": {"mean_abs_dhu": MEAN_BUDGET_HU, "max_abs_dhu": MAX_BUDGET_HU},
        "reference": "fp32 eager forward of the same weights (BatchNorm unfolded, NCHW)",
        "note": "fp16 on the CPU is emulated (slow): measured here for its numerics, which a GPU shares",
        **env, "results": rows,
    })


if __name__ == "__main__":
    main()
