"""Model throughput (slices/s) and peak memory at 512x512, ctdenoise's fast path against the reference.

The reference is the public CLIPDenoising code's test-time forward of the same weights (fp32 eager,
layer4 computed and discarded: :class:`common.ReferenceForward`). Every variant is timed interleaved
with the reference, batch size by batch size and repeat by repeat, so the ratios hold under a varying
machine load. Prints a table and writes JSON.

Variants: ``reference``; ``eager`` (ctdenoise's plain model, fp32, no layer4); ``fast-<precision>``
(:func:`ctdenoise.runtime.prepare.prepare`: BN folded, channels-last, fp32/bf16/fp16 autocast with an fp32
last layer); ``compiled-<precision>`` (the same through ``torch.compile``; ``--compile`` adds
compiled-fp32 and compiled-bf16); ``graphed-<precision>`` (the same replayed as a CUDA graph, CUDA only);
``compiled_graphed-<precision>`` (the compiled model replayed as a CUDA graph); ``ort-fp32`` (the
prepared model run by ONNX Runtime on the CPU; needs ``ctdenoise[onnx]``).
A variant that fails to build or run is reported with its error; the others still run.

Usage: python benchmarks/throughput.py OUT.json [--device cpu|cuda] [--batch-sizes 1,2,4,8,16]
       [--repeats 3] [--size 512] [--variants ...] [--model auto|random|PATH] [--compile]
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from pathlib import Path

import torch

from common import (
    PeakMemory,
    ReferenceForward,
    add_benchmark_model_option,
    environment,
    load_benchmark_model,
    median,
    timed,
    write_json,
)
from ctdenoise.cli.options import add_device_option
from ctdenoise.runtime.prepare import prepare, resolve_device
from ctdenoise.runtime.settings import InferenceSettings

BASE_VARIANTS = ("reference", "eager", "fast-fp32", "fast-bf16")
PREPARED_KINDS = {
    "fast": {},
    "compiled": {"compile": True},
    "graphed": {"cuda_graphs": True},
    "compiled_graphed": {"compile": True, "cuda_graphs": True},
    "ort": {"backend": "onnxruntime"},
}


def build_variant(name: str, model: torch.nn.Module, device: torch.device, batch: int) -> Callable:
    """The callable of variant ``name``, taking a (B, 1, H, W) model-range batch on ``device``."""
    if name == "reference":
        return ReferenceForward(model)
    if name == "eager":
        return model
    kind, _, precision = name.partition("-")
    if kind not in PREPARED_KINDS or not precision:
        raise SystemExit(f"unknown variant {name!r}: reference, eager, or {'|'.join(PREPARED_KINDS)}-fp32|bf16|fp16")
    options = {"backend": "torch", **PREPARED_KINDS[kind]}
    return prepare(model, InferenceSettings(device=str(device), precision=precision, batch_size=batch, **options))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="JSON file to write")
    add_device_option(parser)
    parser.add_argument("--batch-sizes", default="1,2,4,8,16", help="comma-separated (default: %(default)s)")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per variant and batch size")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--variants", default=",".join(BASE_VARIANTS), help="comma-separated subset")
    parser.add_argument("--compile", action="store_true", help="add the torch.compile variants")
    add_benchmark_model_option(parser)
    args = parser.parse_args()

    device = resolve_device(args.device)
    batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
    names = args.variants.split(",") + (["compiled-fp32", "compiled-bf16"] if args.compile else [])
    model, model_label = load_benchmark_model(args.model)
    env = environment(device)
    model = model.to(device).eval()
    results: list[dict[str, object]] = []
    for batch in batch_sizes:
        # compiled and graphed variants are built per batch size (fixed shapes); the others are cheap to rebuild
        x = torch.rand(batch, 1, args.size, args.size, device=device)
        variants: dict[str, Callable] = {}
        peaks: dict[str, int] = {}
        with torch.inference_mode():
            for name in names:  # build and warm up (compile, capture), measuring peak memory
                try:
                    forward = build_variant(name, model, device, batch)
                    with PeakMemory(device) as peak:
                        forward(x)
                except Exception as error:  # noqa: BLE001 - report it and measure the other variants
                    results.append({"variant": name, "batch_size": batch, "error": f"{type(error).__name__}: {error}"})
                    print(f"{name:<15}{batch:>6}  failed: {results[-1]['error']}", flush=True)
                    continue
                variants[name] = forward
                peaks[name] = peak.peak_bytes
            times: dict[str, list[float]] = {name: [] for name in variants}
            for _ in range(args.repeats):  # interleaved: reference and candidates under the same load
                for name, forward in variants.items():
                    times[name].append(timed(lambda: forward(x), device))
        load = os.getloadavg()[0]
        reference_s = median(times["reference"]) if "reference" in times else None
        for name in variants:
            seconds = median(times[name])
            results.append({
                "variant": name, "batch_size": batch, "median_seconds": round(seconds, 4),
                "seconds": [round(t, 4) for t in times[name]],
                "slices_per_second": round(batch / seconds, 3),
                "speedup_vs_reference": round(reference_s / seconds, 3) if reference_s else None,
                "peak_memory_mib": round(peaks[name] / 2**20, 1), "loadavg_1min": round(load, 2),
            })
            r = results[-1]
            print(f"{name:<15}{batch:>6}{r['slices_per_second']:>12.3f}{r['median_seconds']:>10.3f}"
                  f"{str(r['speedup_vs_reference']):>10}{r['peak_memory_mib']:>12.1f}{load:>7.2f}", flush=True)
        del variants
    header = f"{'variant':<15}{'batch':>6}{'slices/s':>12}{'s/batch':>10}{'x ref':>10}{'peak MiB':>12}{'load':>7}"
    print("\n" + header)
    for r in results:
        if "error" in r:
            print(f"{r['variant']:<15}{r['batch_size']:>6}  failed: {r['error']}")
            continue
        print(f"{r['variant']:<15}{r['batch_size']:>6}{r['slices_per_second']:>12.3f}{r['median_seconds']:>10.3f}"
              f"{str(r['speedup_vs_reference']):>10}{r['peak_memory_mib']:>12.1f}{r['loadavg_1min']:>7.2f}")
    write_json(args.out, {
        "benchmark": "throughput", "model": model_label, "size": args.size, "repeats": args.repeats,
        "statistic": "median wall seconds per forward of one batch after one warm-up call; variants interleaved",
        "peak_memory": "CUDA max allocated, or CPU resident-set growth sampled every 5 ms, during the warm-up call",
        **env, "results": results,
    })


if __name__ == "__main__":
    main()
