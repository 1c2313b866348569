"""Side by side: the per-slice dose sweeps of several ``ctdenoise evaluate`` runs, as one markdown table.

Usage: ``python scripts/compare_sweeps.py --kernel-run smooth=RUN_A,RUN_B --kernel-run standard=... [--protocol redcnn]``.
Each RUN is an output folder of ``ctdenoise evaluate ... --sweep-dose ...`` (its ``sweep/sweep.csv``); the methods of
all runs of one kernel are merged (the runs must share the inputs: same data, kernel and seeds, which the ``input``
rows check). Cells are ``PSNR / body RMSE``; **bold** marks a cell where the method named by ``--mark`` loses to the one
named by ``--against`` in PSNR.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def read_sweep(run: Path, protocol: str) -> dict[tuple[str, float, str], tuple[float, float]]:
    """``(case, dose, method) -> (PSNR, body RMSE)`` of one run's per-case rows (not the ``all`` rows)."""
    rows: dict[tuple[str, float, str], tuple[float, float]] = {}
    with open(run / "sweep" / "sweep.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if row["protocol"] == protocol and row["case"] != "all":
                rows[(row["case"], float(row["level"]), row["method"])] = (
                    float(row["psnr_mean"]), float(row["rmse_body_hu_mean"]))
    return rows


def merge(runs: list[Path], protocol: str) -> dict[tuple[str, float, str], tuple[float, float]]:
    """The rows of all ``runs``; a method present in two runs must agree (the inputs must be the same)."""
    merged: dict[tuple[str, float, str], tuple[float, float]] = {}
    for run in runs:
        for key, value in read_sweep(run, protocol).items():
            if key in merged and abs(merged[key][0] - value[0]) > 1e-6:
                raise SystemExit(f"{run}: {key} is {value[0]:.4f} dB here and {merged[key][0]:.4f} dB in an earlier run")
            merged[key] = value
    return merged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kernel-run", action="append", required=True, metavar="KERNEL=RUN[,RUN...]")
    parser.add_argument("--methods", default="input,nlm-sigma,v5,v8", help="columns per case, in order")
    parser.add_argument("--protocol", default="redcnn")
    parser.add_argument("--mark", default="v8")
    parser.add_argument("--against", default="nlm-sigma")
    args = parser.parse_args()
    methods = args.methods.split(",")
    table: list[str] = []
    for spec in args.kernel_run:
        kernel, runs = spec.split("=", 1)
        rows = merge([Path(r) for r in runs.split(",")], args.protocol)
        cases = sorted({case for case, _, _ in rows})
        if not table:
            header = [f"{case.split('/')[0]}: {m}" for case in cases for m in methods]
            table += ["| kernel | dose | " + " | ".join(header) + " |", "|---|---|" + "---|" * len(header)]
        for dose in sorted({d for _, d, _ in rows}, reverse=True):
            cells = []
            for case in cases:
                for method in methods:
                    value = rows.get((case, dose, method))
                    text = "-" if value is None else f"{value[0]:.2f} / {value[1]:.1f}"
                    against = rows.get((case, dose, args.against))
                    if value and method == args.mark and against and value[0] < against[0]:
                        text = f"**{text}**"
                    cells.append(text)
            table.append(f"| {kernel} | {dose:g} | " + " | ".join(cells) + " |")
    print("\n".join(table))


if __name__ == "__main__":
    main()
