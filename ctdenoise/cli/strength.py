"""``ctdenoise strength fit RECIPE.yaml``: score a model at several strengths on a recipe's validation slices
and fit its ``--strength auto`` table (:mod:`ctdenoise.training.strength_fit`); ``ctdenoise strength presets``:
measure its ``--strength low|medium|high`` on the image-quality phantom (:mod:`ctdenoise.iq.presets`)."""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path

from ctdenoise.cli import COMMAND_HELP, EXIT_OK
from ctdenoise.cli.options import (
    add_inference_options,
    add_model_option,
    engine_settings,
    inference_group,
    positive_int,
)

#: Where the report goes when --output is not given: runs/strength_<model folder name>.json.
DEFAULT_RUNS_DIR = Path("runs")


def strength_list(text: str) -> list[float]:
    """``--strengths``: comma-separated numbers from 0 to 1 (argparse turns the error into a usage error, exit 2)."""
    try:
        values = [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a comma-separated list of numbers") from None
    if not values or not all(0.0 <= v <= 1.0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give numbers from 0 to 1, e.g. 0,0.5,1")
    return values


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("strength", help=COMMAND_HELP["strength"],
                              description="Choose a model's strength on paired validation data.")
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    fit = actions.add_parser(
        "fit", help="score a model at several strengths on a recipe's validation slices and fit its auto table",
        description="Build the validation set of the training recipe RECIPE.yaml exactly as training does (never "
        "its test slices), run the model once per input, blend its output with the input at each strength and score "
        "every level by the recipe's selection rule; fit the table that --strength auto reads (noise -> strength). "
        "Writes the report as JSON; --write-table also writes the table as MODEL/strength.json. The recipe format "
        "is in the docs ('Training').",
    )
    fit.add_argument("config", type=Path, metavar="RECIPE.yaml", help="training recipe whose validation set is scored")
    add_model_option(fit)
    fit.add_argument("--output", type=Path, default=None, metavar="OUT.json",
                     help="report to write (default: runs/strength_<model folder name>.json)")
    fit.add_argument("--strengths", type=strength_list, default=None, metavar="S,S,...",
                     help="strengths to score (default: 0,0.1,...,1)")
    fit.add_argument("--write-table", action="store_true",
                     help="write the fitted table as MODEL/strength.json (the table of --strength auto); MODEL must "
                     "then be a model folder you may write to")
    fit.set_defaults(func=run_fit)
    add_presets_parser(actions)


def add_presets_parser(actions: argparse._SubParsersAction) -> None:
    from ctdenoise.strength_presets import PRESET_TARGETS, PRESETS_FILE

    targets = ", ".join(f"{name} {target:g} %" for name, target in PRESET_TARGETS.items())
    presets = actions.add_parser(
        "presets", help="measure the strengths of --strength low|medium|high on the image-quality phantom",
        description="Scan the image-quality digital phantom (the one of `ctdenoise iq`) at a quarter dose with the "
        "standard kernel, run the model once per scan stack and measure the noise at every strength 0, 0.05 ... 1 "
        f"(the blend of its output with the input). Each preset is the smallest strength that removes its share of "
        f"the input's noise ({targets}; strength 1 when even that does not, and the record says so); at each preset's "
        "strength noise, NPS mean frequency, TTF50 of every rod and d' are measured. Prints the table, writes the "
        f"report as JSON and, with --write, the model folder's {PRESETS_FILE}.",
    )
    add_model_option(presets)
    presets.add_argument("--realisations", type=positive_int, default=16, metavar="N",
                         help="simulated scans of the phantom, at least 2 (default: %(default)s)")
    presets.add_argument("--seed", type=int, default=0, help="random seed of the simulated scans (default: %(default)s)")
    presets.add_argument("-o", "--output", type=Path, default=None, metavar="REPORT.json",
                         help="report to write (default: runs/presets_<model folder name>.json)")
    presets.add_argument("--write", action="store_true",
                         help=f"also write the presets as MODEL/{PRESETS_FILE} (what --strength low|medium|high read); "
                         "MODEL must then be a model folder you may write to")
    add_inference_options(inference_group(presets))
    presets.set_defaults(func=run_presets)


def run_presets(args: argparse.Namespace) -> int:
    from ctdenoise.errors import ConfigError
    from ctdenoise.iq.presets import measure_model_presets
    from ctdenoise.registry import check_model_folder
    from ctdenoise.strength_presets import write_presets

    if args.realisations < 2:
        raise ConfigError("realisations", f"needs at least 2 repeated scans, got {args.realisations}")
    model_dir = check_model_folder(args.model)
    output = args.output or DEFAULT_RUNS_DIR / f"presets_{model_dir.name}.json"
    report = measure_model_presets(args.model, realisations=args.realisations, seed=args.seed,
                                   command=presets_command_line(args), settings=engine_settings(args))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print_presets(report)
    print(f"wrote {output}")
    if args.write:
        print(f"wrote {write_presets(model_dir, report)}")
    return EXIT_OK


def presets_command_line(args: argparse.Namespace) -> str:
    """The command line that measured the presets, as presets.json records it."""
    words = ["ctdenoise", "strength", "presets", "--model", str(args.model), "--realisations", str(args.realisations),
             "--seed", str(args.seed)]
    return shlex.join([*words, "--write"] if args.write else words)


def _percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:+.1f}"


def print_presets(report: dict) -> None:
    """The presets as a table: strength, noise, f_av and TTF50 of every rod, each as a change in percent of the
    input's (and d')."""
    settings = report["measured_with"]
    inserts = [f"TTF50 {i['name']} ({i['contrast_hu']:+.0f} HU) %" for i in report["input"]["ttf50"]]
    print(f"{report['model']}: {settings['realisations']} phantom scans, dose {settings['dose']:g}, "
          f"kernel {settings['kernel']}, seed {settings['seed']}; input noise {report['input']['noise_hu']:.2f} HU")
    header = ["preset", "strength", "noise HU", "noise %", "f_av %", *inserts, "d'"]
    rows = [header]
    for name, preset in report["presets"].items():
        strength = f"{preset['strength']:g}" + ("" if preset["target_reached"] else " (target not reached)")
        rows.append([name, strength, f"{preset['noise_hu']:.2f}", _percent(preset["noise_change_percent"]),
                     _percent(preset["f_av_change_percent"]),
                     *(_percent(i["ttf50_change_percent"]) for i in preset["ttf50"]),
                     "n/a" if preset["dprime"] is None else f"{preset['dprime']:.2f}"])
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    for row in rows:
        print("  ".join(cell.rjust(width) for cell, width in zip(row, widths)))


def run_fit(args: argparse.Namespace) -> int:
    from ctdenoise.registry import resolve_model_dir
    from ctdenoise.strength_table import write_strength_table
    from ctdenoise.training.strength_fit import STRENGTH_GRID, fit_strength

    model_dir = resolve_model_dir(args.model)
    output = args.output or DEFAULT_RUNS_DIR / f"strength_{model_dir.name}.json"
    result = fit_strength(args.config, args.model, list(args.strengths or STRENGTH_GRID))
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print_fit(result)
    if args.write_table:
        auto = result["auto"]
        fitted_on = {"config": str(args.config), "validation_slices": result["validation_slices"],
                     "levels": list(result["levels"]), "protocol": auto["protocol"],
                     "strengths": [float(s) for s in result["by_strength"]], "report": str(output)}
        print(f"wrote {write_strength_table(model_dir, auto['points'], fitted_on, fit_command(args, output))}")
    return EXIT_OK


def fit_command(args: argparse.Namespace, output: Path) -> str:
    """The command line that fitted a table, as the table records it."""
    words = ["ctdenoise", "strength", "fit", str(args.config), "--model", str(args.model), "--output", str(output)]
    if args.strengths:
        words += ["--strengths", ",".join(f"{s:g}" for s in args.strengths)]
    return shlex.join([*words, "--write-table"])


def print_fit(result: dict) -> None:
    """The scores per strength, the best strength, and the auto table's fit per level."""
    auto, protocol = result["auto"], result["auto"]["protocol"]
    for strength, scored in result["by_strength"].items():
        print(f"strength {float(strength):g}: selection score {scored['selection_score']:.3f}")
    print(f"best strength by the recipe's selection rule: {result['best_strength']:g}")
    for label, level in auto["levels"].items():
        best = result["by_strength"][str(level["best_strength"])]["levels"][label][protocol]["psnr"]
        print(f"{label}: median noise {level['median_noise_hu']} HU, best {level['best_strength']:g}, auto "
              f"{auto['by_level'][label]['chosen_strengths']}, {protocol} PSNR auto "
              f"{auto['by_level'][label][protocol]['psnr']:.2f} / best {best:.2f}")
    print(f"table points {auto['points']}; selection score {auto['score']}")
