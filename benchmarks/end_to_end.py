"""End-to-end ``ctdenoise denoise`` of one 512x512xN DICOM series built from a real slice, against the I/O floor.

The series repeats pydicom-data's real 512x512 CT slice 693_UNCR.dcm at N positions (new UIDs, shifted
values: :func:`ctdenoise.examples.build_series_from_slice`). Measured, in this order and in one process:

* ``io_floor``: read the series (find_series + read_volume) and write it back as a derived DICOM series
  (write_volume), no model: the least any run must spend;
* ``split``: the same read, the compute (denoise_volume with the model prepared once, as a batch run
  prepares it) and the write, timed separately, one after the other;
* ``cli``: ``ctdenoise denoise SERIES -o OUT --model M`` through the command line's ``main`` (model
  loading and preparation included; compute and write overlapped as the CLI does), wall time.

The three are repeated ``--repeats`` times, interleaved, and medians are reported.

Prints a table and writes JSON with the ratios cli/io_floor and (read+compute+write)/io_floor.

Usage: python benchmarks/end_to_end.py OUT.json [--slices 300] [--device auto] [--precision auto]
       [--batch-size N] [--repeats 3] [--compile] [--cuda-graphs] [--model auto|random|PATH] [--slice-file DCM]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
from pydicom.data import get_testdata_file

from common import environment, load_benchmark_model, write_json
from ctdenoise.cli import main as cli_main
from ctdenoise.examples import build_series_from_slice
from ctdenoise.inference import InferenceSettings, denoise_volume, prepare_for_settings, resolve_device
from ctdenoise.io import find_series, read_volume, write_volume
from ctdenoise.model import save_checkpoint

SLICE_FILE = "693_UNCR.dcm"
SLICE_SPACING_MM = 1.0


def read_series(folder: Path):
    (ref,) = find_series(folder)
    return read_volume(ref)


def write_series(volume, hu: np.ndarray, folder: Path) -> None:
    write_volume(volume, hu, folder, format="dicom", series_description_suffix="benchmark",
                 derivation_description="ctdenoise benchmark")


def stopwatch(run):
    start = time.perf_counter()
    value = run()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--slices", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3, help="rounds of floor, split and CLI; medians reported")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--precision", default="auto")
    parser.add_argument("--batch-size", type=int, default=None)
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--cuda-graphs", action="store_true")
    parser.add_argument("--model", default="auto")
    parser.add_argument("--slice-file", type=Path, default=None,
                        help=f"the real slice to repeat (default: pydicom-data's {SLICE_FILE})")
    args = parser.parse_args()
    settings = InferenceSettings(args.device, args.precision, args.batch_size, args.compile, args.cuda_graphs)
    slice_file = args.slice_file or Path(get_testdata_file(SLICE_FILE, download=False))
    device = resolve_device(args.device)
    env = environment(device)
    model, label = load_benchmark_model(args.model)
    runs: dict[str, list[float]] = {}

    def record(name: str, seconds: float) -> None:
        runs.setdefault(name, []).append(seconds)

    with tempfile.TemporaryDirectory(prefix="ctdenoise-e2e-") as tmp:
        work = Path(tmp)
        series = build_series_from_slice(
            slice_file, work / "in" / "series",
            [k * SLICE_SPACING_MM for k in range(args.slices)],
        )
        checkpoint = save_checkpoint(model, work / "model")
        runner, prepare_s = stopwatch(lambda: prepare_for_settings(model, settings))
        for repeat in range(args.repeats):  # interleaved, so every stage sees the same machine load
            volume, seconds = stopwatch(lambda: read_series(series))
            record("io_floor_read_s", seconds)
            record("io_floor_write_s", stopwatch(lambda: write_series(volume, volume.hu, work / f"floor{repeat}"))[1])

            volume, seconds = stopwatch(lambda: read_series(series))
            record("read_s", seconds)
            denoised, seconds = stopwatch(lambda: denoise_volume(runner, volume, settings))
            record("compute_s", seconds)
            record("write_s", stopwatch(lambda: write_series(volume, denoised.hu, work / f"split{repeat}"))[1])

            cli_args = ["denoise", str(series.parent), "-o", str(work / f"cli{repeat}"), "--model", str(checkpoint),
                        "--device", args.device, "--precision", args.precision]
            cli_args += ["--batch-size", str(args.batch_size)] if args.batch_size else []
            cli_args += ["--compile"] if args.compile else []
            cli_args += ["--cuda-graphs"] if args.cuda_graphs else []
            code, seconds = stopwatch(lambda: cli_main(cli_args))
            if code != 0:
                raise SystemExit(f"ctdenoise denoise exited with {code}")
            record("cli_total_s", seconds)

    rows = {name: statistics.median(values) for name, values in runs.items()}
    rows["io_floor_s"] = statistics.median(r + w for r, w in zip(runs["io_floor_read_s"], runs["io_floor_write_s"]))
    split_totals = map(sum, zip(runs["read_s"], runs["compute_s"], runs["write_s"]))
    rows["sum_read_compute_write_s"] = statistics.median(split_totals)
    rows["prepare_s"] = prepare_s
    floor = rows["io_floor_s"]
    ratios = {
        "cli_over_io_floor": rows["cli_total_s"] / floor,
        "sum_over_io_floor": rows["sum_read_compute_write_s"] / floor,
        "compute_slices_per_second": args.slices / rows["compute_s"],
    }
    print(f"{'stage':<28}{'seconds':>10}")
    for name, value in rows.items():
        print(f"{name:<28}{value:>10.2f}")
    for name, value in ratios.items():
        print(f"{name:<28}{value:>10.2f}")
    write_json(args.out, {
        "benchmark": "end_to_end", "model": label, "slices": args.slices, "slice_file": slice_file.name,
        "settings": {"device": args.device, "precision": args.precision, "batch_size": args.batch_size,
                     "compile": args.compile, "cuda_graphs": args.cuda_graphs},
        "repeats": args.repeats, "statistic": "median over the repeats (each stage measured once per repeat)",
        **env, "seconds": {k: round(v, 3) for k, v in rows.items()},
        "runs_seconds": {k: [round(v, 3) for v in values] for k, values in runs.items()},
        "ratios": {k: round(v, 3) for k, v in ratios.items()},
    })


if __name__ == "__main__":
    main()
