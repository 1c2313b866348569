"""What preparing the model once saves an evaluation: the old per-chunk path against prepare-once, same input.

``ctdenoise evaluate`` denoises each case in chunks of ``CHUNK_SLICES`` (16) slices, and a strength sweep runs
every cell again. Before the runtime refactor (issue 26), ``clip_model_method`` handed the bare network to
``denoise_hu``, so every chunk copied and BatchNorm-folded the network again and, with ONNX Runtime installed
(the CPU default, ``--backend auto``), exported it to ONNX again. Now the method prepares it once
(``ctdenoise.runtime.prepare.load_prepared``) and every chunk reuses the prepared copy.

For each backend (``auto``: what evaluate runs; ``torch``), interleaved over ``--repeats``:

* ``per_chunk``: the old path, ``denoise_hu(network, chunk, settings)`` for every chunk (one preparation each);
* ``prepare_once``: ``prepare`` once (its seconds recorded as ``prepare_s``), then ``denoise_hu(prepared, chunk)``.

Both give the same pixels (checked: max |dHU| recorded). Input: ``--slices`` copies of a real 128x128 CT slice
(pydicom's CT_small) with independent Gaussian noise, denoised by the shipped default model on the CPU.

Usage: python benchmarks/eval_prepare_once.py OUT.json [--slices 32] [--repeats 2] [--model auto|random|PATH]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import numpy as np
import pydicom
import torch
from pydicom.data import get_testdata_file

from common import add_benchmark_model_option, environment, load_benchmark_model, write_json
from ctdenoise.evaluate.report import CHUNK_SLICES
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.prepare import prepare, resolve_backend
from ctdenoise.runtime.settings import InferenceSettings

BACKENDS = ("auto", "torch")


def noisy_stack(slices: int) -> np.ndarray:
    """``slices`` copies of CT_small (128x128, HU) with independent Gaussian noise of 20 HU (seed 0)."""
    ds = pydicom.dcmread(get_testdata_file("CT_small.dcm"))
    hu = ds.pixel_array.astype(np.float32) * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
    rng = np.random.default_rng(0)
    return np.stack([hu + rng.normal(0, 20, hu.shape).astype(np.float32) for _ in range(slices)])


def chunks(stack: np.ndarray) -> list[np.ndarray]:
    return [stack[start:start + CHUNK_SLICES] for start in range(0, len(stack), CHUNK_SLICES)]


def per_chunk(network: torch.nn.Module, stack: np.ndarray, settings: InferenceSettings) -> tuple[np.ndarray, float]:
    started = time.perf_counter()
    out = np.concatenate([denoise_hu(network, chunk, settings) for chunk in chunks(stack)])
    return out, time.perf_counter() - started


def prepare_once(network: torch.nn.Module, stack: np.ndarray, settings: InferenceSettings) -> tuple[np.ndarray, float, float]:
    started = time.perf_counter()
    prepared = prepare(network, settings)
    prepared_s = time.perf_counter() - started
    out = np.concatenate([denoise_hu(prepared, chunk) for chunk in chunks(stack)])
    return out, time.perf_counter() - started, prepared_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="JSON file to write")
    parser.add_argument("--slices", type=int, default=32, help="slices in the stack (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats (default: %(default)s)")
    add_benchmark_model_option(parser)
    args = parser.parse_args()
    env = environment(torch.device("cpu"))  # the load average before the runs
    network, model_label = load_benchmark_model(args.model)
    stack = noisy_stack(args.slices)
    runs: dict[str, dict[str, list[float]]] = {b: {"per_chunk": [], "prepare_once": [], "prepare_s": []} for b in BACKENDS}
    max_dhu: dict[str, float] = {}
    for _ in range(args.repeats):
        for backend in BACKENDS:
            settings = InferenceSettings(device="cpu", backend=backend)
            old, old_s = per_chunk(network, stack, settings)
            new, new_s, prepared_s = prepare_once(network, stack, settings)
            runs[backend]["per_chunk"].append(old_s)
            runs[backend]["prepare_once"].append(new_s)
            runs[backend]["prepare_s"].append(prepared_s)
            max_dhu[backend] = max(max_dhu.get(backend, 0.0), float(np.abs(old - new).max()))
    results = {}
    for backend in BACKENDS:
        old_median, new_median = (statistics.median(runs[backend][k]) for k in ("per_chunk", "prepare_once"))
        results[backend] = {
            "backend_resolved": resolve_backend(InferenceSettings(device="cpu", backend=backend)),
            **{f"{k}_seconds": [round(s, 3) for s in v] for k, v in runs[backend].items()},
            "per_chunk_median_s": round(old_median, 3), "prepare_once_median_s": round(new_median, 3),
            "speedup_median": round(old_median / new_median, 2), "max_abs_dhu_old_vs_new": round(max_dhu[backend], 4),
        }
        print(f"{backend} ({results[backend]['backend_resolved']}): per chunk {old_median:.2f} s, prepare once "
              f"{new_median:.2f} s (of which prepare {statistics.median(runs[backend]['prepare_s']):.2f} s): "
              f"{old_median / new_median:.2f}x; max |dHU| {max_dhu[backend]:.4f}")
    write_json(args.output, {
        "benchmark": "eval_prepare_once", **env, "model": model_label,
        "slices": args.slices, "rows_cols": list(stack.shape[1:]), "chunk_slices": CHUNK_SLICES,
        "chunks": len(chunks(stack)), "repeats": args.repeats, "results": results,
    })


if __name__ == "__main__":
    main()
