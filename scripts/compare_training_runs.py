"""Side by side: the validation scores that several ``ctdenoise train`` runs logged, as one markdown table.

Usage: ``python scripts/compare_training_runs.py NAME=RUN_DIR [NAME=RUN_DIR ...] [--protocol redcnn]``.
Each RUN_DIR holds the ``train_log.jsonl`` a run writes. For every validation a run logged (the starting
model's at iteration 0, then the model's every ``validation.every`` iterations) the table has one row per run
with the selection score and the PSNR of each validation level; a column ``- first`` gives each level's
change against the same run's first model row, so arms that share a starting model are compared on what
training changed. Runs with different validation levels are refused: their scores are not comparable.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def validations(run: Path, protocol: str) -> list[tuple[int, str, float, dict[str, float]]]:
    """``(iteration, input, selection score, {level: PSNR})`` of every model validation in ``run``'s log, in order
    (the noisy input's rows are left out)."""
    rows = []
    with open(run / "train_log.jsonl") as handle:
        for line in handle:
            event = json.loads(line)
            if event.get("event") != "validation" or event.get("input") == "noisy":
                continue
            levels = {name: float(metrics[protocol]["psnr"]) for name, metrics in event["metrics"].items()}
            rows.append((int(event["iteration"]), str(event.get("input")), float(event["selection_score"]), levels))
    if not rows:
        raise SystemExit(f"{run}: no validation in train_log.jsonl")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", metavar="NAME=RUN_DIR")
    parser.add_argument("--protocol", default="redcnn")
    args = parser.parse_args()
    named = [spec.split("=", 1) for spec in args.runs]
    logs = {name: validations(Path(directory), args.protocol) for name, directory in named}
    levels = list(next(iter(logs.values()))[0][3])
    for name, rows in logs.items():
        if any(list(row[3]) != levels for row in rows):
            raise SystemExit(f"{name}: its validation levels differ from the first run's; the scores are not comparable")
    print("| run | iteration | selection score | - first | " + " | ".join(levels) + " |")
    print("|---|---|---|---|" + "---|" * len(levels))
    iterations = sorted({row[0] for rows in logs.values() for row in rows})
    for iteration in iterations:
        for name, rows in logs.items():
            first = rows[0]
            for row in (r for r in rows if r[0] == iteration):
                cells = [f"{row[3][level]:.2f}" for level in levels]
                print(f"| {name} ({row[1]}) | {iteration:,} | {row[2]:.2f} | {row[2] - first[2]:+.2f} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
