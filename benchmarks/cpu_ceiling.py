"""How close a measured throughput is to what the CPU can do: FLOPs per slice against a matmul ceiling.

Counts the floating-point operations of one 512x512 forward pass (``torch.utils.flop_counter``: the
convolutions and matrix products; elementwise work is not counted) for ctdenoise's model and for the
reference (layer4 computed and discarded), measures this machine's fp32 matrix-product rate with
torch's threads (a practical ceiling for convolution-bound inference), and turns the slices/s of a
``throughput.py`` JSON into achieved GFLOP/s, next to the rate that 3x the reference would need.

Usage: python benchmarks/cpu_ceiling.py OUT.json THROUGHPUT.json [--model auto|random|PATH] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

from common import ReferenceForward, add_benchmark_model_option, environment, load_benchmark_model, write_json

MATMUL_SIZE = 2048
MATMUL_REPEATS = 5
GOAL_RATIO = 3.0


def forward_flops(module: torch.nn.Module, size: int) -> int:
    """Floating-point operations (2 per multiply-accumulate) of one forward pass of a 1x1xSxS batch."""
    counter = FlopCounterMode(display=False)
    with torch.inference_mode(), counter:
        module(torch.rand(1, 1, size, size))
    return counter.get_total_flops()


def matmul_gflops(size: int = MATMUL_SIZE, repeats: int = MATMUL_REPEATS) -> float:
    """Median fp32 GFLOP/s of a size x size matrix product on the CPU (after one warm-up product)."""
    a, b = torch.rand(size, size), torch.rand(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("throughput", type=Path, help="a throughput.py JSON measured on this machine")
    add_benchmark_model_option(parser)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    model, label = load_benchmark_model(args.model)
    model.eval()
    flops = {"model": forward_flops(model, args.size), "reference": forward_flops(ReferenceForward(model), args.size)}
    ceiling = matmul_gflops()
    measured = json.loads(args.throughput.read_text())
    rows = []
    for result in measured["results"]:
        if "error" in result:
            continue
        per_slice = flops["reference" if result["variant"] == "reference" else "model"]
        rows.append({
            "variant": result["variant"], "batch_size": result["batch_size"],
            "slices_per_second": result["slices_per_second"],
            "achieved_gflops": round(result["slices_per_second"] * per_slice / 1e9, 1),
            "fraction_of_matmul_rate": round(result["slices_per_second"] * per_slice / 1e9 / ceiling, 3),
        })
    goals = []
    for r in (r for r in rows if r["variant"] == "reference"):
        needed = GOAL_RATIO * r["slices_per_second"] * flops["model"] / 1e9
        goals.append({"batch_size": r["batch_size"], "gflops_needed_for_3x": round(needed, 1),
                      "fraction_of_matmul_rate": round(needed / ceiling, 3)})
    print(f"GFLOP per slice: model {flops['model'] / 1e9:.1f}, reference {flops['reference'] / 1e9:.1f}; "
          f"fp32 matmul {ceiling:.1f} GFLOP/s")
    print(f"{'variant':<12}{'batch':>6}{'slices/s':>10}{'GFLOP/s':>10}{'of matmul':>11}")
    for r in rows:
        print(f"{r['variant']:<12}{r['batch_size']:>6}{r['slices_per_second']:>10.3f}{r['achieved_gflops']:>10.1f}"
              f"{r['fraction_of_matmul_rate']:>11.2f}")
    for g in goals:
        print(f"3x the reference at batch {g['batch_size']}: {g['gflops_needed_for_3x']} GFLOP/s "
              f"= {g['fraction_of_matmul_rate']:.2f} of the matmul rate")
    write_json(args.out, {
        "benchmark": "cpu_ceiling", "model": label, "size": args.size, "throughput_file": args.throughput.name,
        "flops_per_slice": flops, "matmul_gflops": round(ceiling, 1),
        "matmul": f"median of {MATMUL_REPEATS} fp32 {MATMUL_SIZE}x{MATMUL_SIZE} products, torch threads",
        **environment(torch.device("cpu")), "results": rows, "goal_3x": goals,
    })


if __name__ == "__main__":
    main()
