"""Accuracy of the fast inference path against fp32 eager on a real 512x512 CT slice, per precision.

Budget (performance issue): mean |dHU| <= 0.5 and max |dHU| <= 3 against the fp32 eager output of the
same weights on the CPU. Slice: pydicom-data's 693_UNCR.dcm (or ``--slice-file``). The fast path runs on
``--device``; on a CUDA device each precision is also measured replayed as a CUDA graph. Prints a table
and writes JSON; decides nothing itself (the defaults in ``ctdenoise.runtime.precision.resolve_precision``
follow its results).

Usage: python benchmarks/accuracy.py OUT.json [--model auto|random|PATH] [--precisions fp32,bf16,fp16]
       [--device cpu|cuda] [--slice-file DCM] [--onnxruntime]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.data import get_testdata_file

from common import add_benchmark_model_option, environment, load_benchmark_model, model_fields, write_json
from ctdenoise.cli.options import add_device_option
from ctdenoise.intensity import hu_to_unit, unit_to_hu
from ctdenoise.runtime.prepare import prepare, resolve_device
from ctdenoise.runtime.settings import InferenceSettings

MEAN_BUDGET_HU, MAX_BUDGET_HU = 0.5, 3.0
SLICE_FILE = "693_UNCR.dcm"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    add_benchmark_model_option(parser)
    parser.add_argument("--precisions", default="fp32,bf16,fp16")
    add_device_option(parser, default="cpu", help="where the fast path runs (the fp32 eager reference runs on the CPU)")
    parser.add_argument("--slice-file", type=Path, default=None, help=f"a CT slice (default: pydicom-data's {SLICE_FILE})")
    parser.add_argument("--onnxruntime", action="store_true", help="add fp32 on ONNX Runtime (CPU; ctdenoise[onnx])")
    args = parser.parse_args()
    device = resolve_device(args.device)
    model, label = load_benchmark_model(args.model)
    ds = pydicom.dcmread(args.slice_file or get_testdata_file(SLICE_FILE, download=False))
    hu = (ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)).astype(np.float32)
    unit = hu_to_unit(torch.from_numpy(hu))[None, None]
    env = environment(device)
    graph_options = [False, True] if device.type == "cuda" else [False]
    configs = [{"precision": p, "cuda_graphs": g, "onnxruntime": False}
               for p in args.precisions.split(",") for g in graph_options]
    configs += [{"precision": "fp32", "cuda_graphs": False, "onnxruntime": True}] if args.onnxruntime else []
    with torch.inference_mode():
        eager = unit_to_hu(model.eval()(unit))[0, 0].numpy()
        rows = []
        for config in configs:
            fast = prepare(model, InferenceSettings(
                device="cpu" if config["onnxruntime"] else str(device), precision=config["precision"], batch_size=1,
                cuda_graphs=config["cuda_graphs"], backend="onnxruntime" if config["onnxruntime"] else "torch"))
            start = time.perf_counter()
            out = unit_to_hu(fast(unit.to(fast.device)))[0, 0].cpu().numpy()
            seconds = time.perf_counter() - start
            error = np.abs(out - eager)
            rows.append({
                "precision": config["precision"], "cuda_graphs": config["cuda_graphs"],
                "backend": "onnxruntime" if config["onnxruntime"] else "torch", "device": str(fast.device),
                "mean_abs_dhu": round(float(error.mean()), 4), "max_abs_dhu": round(float(error.max()), 4),
                "p99_abs_dhu": round(float(np.percentile(error, 99)), 4),
                "within_budget": bool(error.mean() <= MEAN_BUDGET_HU and error.max() <= MAX_BUDGET_HU),
                "seconds_first_call": round(seconds, 3),
            })
    print(f"{'precision':<10}{'backend':>12}{'graphs':>7}{'mean|dHU|':>11}{'max|dHU|':>10}{'p99':>8}{'budget':>8}")
    for r in rows:
        graphs = "yes" if r["cuda_graphs"] else "no"
        print(f"{r['precision']:<10}{r['backend']:>12}{graphs:>7}{r['mean_abs_dhu']:>11.4f}{r['max_abs_dhu']:>10.3f}{r['p99_abs_dhu']:>8.3f}"
              f"{'ok' if r['within_budget'] else 'NO':>8}")
    write_json(args.out, {
        "benchmark": "accuracy", "model": label, **model_fields(label), "slice": (args.slice_file or Path(SLICE_FILE)).name,
        "budget": {"mean_abs_dhu": MEAN_BUDGET_HU, "max_abs_dhu": MAX_BUDGET_HU},
        "reference": "fp32 eager forward of the same weights (BatchNorm unfolded, NCHW)",
        "note": "fp16 on the CPU is emulated (slow); seconds_first_call includes CUDA graph capture and ONNX export",
        **env, "results": rows,
    })


if __name__ == "__main__":
    main()
