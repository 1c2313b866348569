"""Markdown tables for the README from the benchmark JSON files (so the README holds their output verbatim).

Every table is preceded by one line naming the machine, the run and the data (``data_label`` in the JSON;
results written before the benchmarks named their data were synthetic series built from one real slice).

Usage: python benchmarks/readme_table.py THROUGHPUT.json [MORE_THROUGHPUT.json ...] [--accuracy A.json ...]
       [--e2e E.json ...] [--peers P.json ...] [--ort-vs-torch O.json ...]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def run_line(data: dict) -> str:
    """The machine, versions, date and load of one benchmark run, as one Markdown line."""
    cpu = f"{data['cpu']} ({data['cpu_count']} cores, torch threads {data['torch_threads']})"
    machine = f"{data['gpu']} (host: {cpu})" if "gpu" in data else f"{cpu}; native bf16: {data['cpu_native_bf16']}"
    line = (f"{machine}; Python {data['python']}, torch {data['torch']}; "
            f"{data['date_utc']}; load average (1/5/15 min) {data['loadavg_start']} at start, "
            f"{data['loadavg_end']} at end; model: {data['model']}")
    if "data_label" in data:
        line += f"; data: {data['data_label']}"
    if data.get("quick"):
        line += " (--quick: a check that the script runs, not a measurement)"
    return line


def throughput_table(data: dict) -> list[str]:
    lines = ["| variant | batch | slices/s | s per batch | x reference | peak MiB | load (1 min) |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in data["results"]:
        if "error" in r:
            lines.append(f"| {r['variant']} | {r['batch_size']} | failed: {r['error']} | | | | |")
            continue
        lines.append(f"| {r['variant']} | {r['batch_size']} | {r['slices_per_second']:.3f} | {r['median_seconds']:.3f} "
                     f"| {r['speedup_vs_reference']:.2f} | {r['peak_memory_mib']:.0f} | {r['loadavg_1min']:.2f} |")
    return lines


def accuracy_table(data: dict) -> list[str]:
    lines = ["| device | backend | precision | CUDA graph | mean abs dHU | max abs dHU | p99 abs dHU "
             "| within budget (0.5 / 3 HU) |",
             "|---|---|---|---|---:|---:|---:|---|"]
    for r in data["results"]:
        graphs = "yes" if r.get("cuda_graphs") else "no"
        device, backend = r.get("device", data["device"]), r.get("backend", "torch")
        lines.append(f"| {device} | {backend} | {r['precision']} | {graphs} | {r['mean_abs_dhu']:.4f} | {r['max_abs_dhu']:.3f} | {r['p99_abs_dhu']:.3f} "
                     f"| {'yes' if r['within_budget'] else 'no'} |")
    return lines


def data_name(data: dict) -> str:
    """The data a run used: its label, or (results from before the label) the synthetic series it was."""
    return data.get("data_label") or f"{data.get('slice_file', 'one real slice')} repeated, {data['slices']} slices, synthetic"


def e2e_table(data: dict) -> list[str]:
    s, q, settings = data["seconds"], data["ratios"], data["settings"]
    options = [name for name in ("compile", "cuda_graphs") if settings.get(name)]
    backend = settings.get("backend_resolved", settings.get("backend", "torch"))
    if backend != "torch":
        options.append(backend)
    if settings.get("io_workers"):
        options.append(f"io-workers {settings['io_workers']}")
    flags = f"{settings['precision']} {' '.join(options)}".strip()
    cold = f"{s['cli_cold_s']:.2f} | {q['cli_cold_over_io_floor']:.2f}" if "cli_cold_s" in s else "not measured | "
    return [
        "| data | settings | read s | compute s | write s | I/O floor s | CLI total s | CLI / floor "
        "| (read+compute+write) / floor | CLI new process s | new process / floor |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        f"| {data_name(data)} | {flags} | {s['read_s']:.2f} | {s['compute_s']:.2f} | {s['write_s']:.2f} "
        f"| {s['io_floor_s']:.2f} | {s['cli_total_s']:.2f} | {q['cli_over_io_floor']:.2f} | {q['sum_over_io_floor']:.2f} "
        f"| {cold} |",
    ]


def peers_table(data: dict) -> list[str]:
    lines = ["| method | how it ran | slices timed | s per slice (median) | x ctdenoise CLI time |",
             "|---|---|---:|---:|---:|"]
    for r in data["results"]:
        timed = f"{r['slices_timed']} of {r['slices_in_series']} (extrapolated)" if r["extrapolated"] else str(r["slices_timed"])
        lines.append(f"| {r['method']} | {r['description']} | {timed} | {r['median_seconds_per_slice']:.3f} "
                     f"| {r['x_ctdenoise_cli']:.2f} |")
    lines += [f"| {s['method']} | skipped: {s['reason']} | | | |" for s in data.get("skipped", [])]
    return lines


def ort_table(data: dict) -> list[str]:
    lines = [f"| measure (batch {data['batch_size']}, {data['repeats']} repeats) | torch s (median) | onnxruntime s (median) "
             "| onnxruntime / torch per repeat | median ratio | ONNX Runtime faster every repeat |",
             "|---|---:|---:|---|---:|---|"]
    for measure, r in data["results"].items():
        per_repeat = ", ".join(f"{x:.2f}" for x in r["ratio_ort_over_torch"])
        lines.append(f"| {measure} | {r['torch_median_s']:.2f} | {r['onnxruntime_median_s']:.2f} | {per_repeat} "
                     f"| {r['median_ratio_ort_over_torch']:.3f} | {'yes' if r['ort_faster_every_repeat'] else 'no'} |")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("throughput", nargs="*", type=Path)
    parser.add_argument("--accuracy", type=Path, nargs="*", default=[])
    parser.add_argument("--e2e", type=Path, nargs="*", default=[])
    parser.add_argument("--peers", type=Path, nargs="*", default=[])
    parser.add_argument("--ort-vs-torch", type=Path, nargs="*", default=[])
    args = parser.parse_args(argv)
    sections = [(p, throughput_table) for p in args.throughput] + [(p, e2e_table) for p in args.e2e]
    sections += [(p, peers_table) for p in args.peers] + [(p, ort_table) for p in args.ort_vs_torch]
    sections += [(p, accuracy_table) for p in args.accuracy]
    for path, table in sections:
        data = json.loads(path.read_text())
        print(f"{data['benchmark']} ({path.name}): {run_line(data)}\n")
        print("\n".join(table(data)) + "\n")


if __name__ == "__main__":
    main()
