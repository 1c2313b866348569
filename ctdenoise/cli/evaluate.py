"""``ctdenoise evaluate``: score the denoiser and the baselines on paired low-/normal-dose CT.

The data modes and the sweep are described in :data:`DESCRIPTION`, the command's ``--help`` text.
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from tqdm import tqdm

from ctdenoise.cli import COMMAND_HELP, EXIT_OK, EXIT_USAGE
from ctdenoise.cli.options import add_batch_size_option, add_device_option, add_model_option, inference_group
from ctdenoise.evaluate.clean_check import CLEAN_CHECK_DIR, run_clean_check
from ctdenoise.evaluate.methods import Method, classical_method, clip_model_method, redcnn_method
from ctdenoise.evaluate.pairing import MAYO_THICKNESSES, CaseSpec, mayo_cases, pair_case, simulated_cases
from ctdenoise.evaluate.report import EvaluationSettings, evaluate_cases
from ctdenoise.evaluate.sweep import SweepSettings, run_sweep
from ctdenoise.intensity import WINDOWS
from ctdenoise.metrics import PROTOCOLS
from ctdenoise.recon_kernels import KERNELS
from ctdenoise.runtime.options import AUTO_STRENGTH, STRENGTH_PRESETS

log = logging.getLogger("ctdenoise.evaluate")
NO_MODEL = "none"


def _floats(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None


def _ints(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def _names(text: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in text.split(",") if v.strip())


#: The ``--help`` description (plain text: argparse prints it as written).
DESCRIPTION = """\
Score the denoiser and the baselines on paired low-/normal-dose CT, under named metric protocols.

Data (one of):

  --mayo ROOT                     a Mayo-2016 tree (L067 ... L506 with full_1mm/quarter_1mm, ...);
                                  test patient L506 unless --patients says otherwise
  --low DIR --full DIR            one low-dose and one normal-dose series, paired by slice position
  --full DIR --simulate-dose K    every series under DIR with a physics-simulated dose K as its low dose

--sweep-dose / --sweep-sigma add the generalisation report on the normal-dose slices (with only
--full DIR given, only the sweep runs).
"""


def _variant(text: str) -> tuple[str, str, float | str | None]:
    """``NAME=MODEL``, ``NAME=MODEL@S``, ``NAME=MODEL@auto`` or ``NAME=MODEL@PRESET`` (low, medium, high) ->
    (name, model, strength: a number, "auto", the preset's name or None)."""
    name, sep, rest = text.partition("=")
    if not sep or not name or not rest:
        raise argparse.ArgumentTypeError(f"expected NAME=MODEL or NAME=MODEL@STRENGTH, got {text!r}")
    model, at, strength = rest.rpartition("@") if "@" in rest else (rest, "", "")
    if not at:
        return name, model, None
    if strength == AUTO_STRENGTH or strength in STRENGTH_PRESETS:
        return name, model, strength
    try:
        return name, model, float(strength)
    except ValueError:
        raise argparse.ArgumentTypeError(f"strength in {text!r} is not a number") from None


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help=COMMAND_HELP["evaluate"],
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    data = p.add_argument_group("data")
    data.add_argument("--mayo", type=Path, metavar="ROOT", help="Mayo-2016 root with patient folders L067 ... L506")
    data.add_argument("--patients", type=_names, default=None,
                      help="comma-separated patient folders (Mayo default: L506; 'all' for every patient)")
    data.add_argument("--thickness", default="1mm", choices=MAYO_THICKNESSES, help="Mayo slice thickness folder")
    data.add_argument("--low", type=Path, metavar="DIR", help="low-dose series (generic pair mode)")
    data.add_argument("--full", type=Path, metavar="DIR", help="normal-dose series or tree")
    data.add_argument("--simulate-dose", type=float, metavar="K", help="simulate the low dose from --full at dose fraction K")
    data.add_argument("--kernel", default="hann", choices=tuple(KERNELS),
                      help="reconstruction kernel of every simulated low dose (--simulate-dose and the dose sweep), "
                      "i.e. its noise texture; see 'ctdenoise simulate --help' (default: %(default)s)")
    methods = p.add_argument_group("methods")
    add_model_option(methods, help=f"CLIPDenoiser: shipped model name or checkpoint folder, '{NO_MODEL}' to skip (default: %(default)s)")
    methods.add_argument("--model-name", default="clipdenoiser", help="label of --model in the reports")
    methods.add_argument("--variant", dest="variants", action="append", type=_variant, default=[], metavar="NAME=MODEL[@S]",
                         help="another CLIPDenoiser to compare, labelled NAME: a shipped model name or checkpoint folder, "
                         "optionally at strength S (0..1), @auto (each stack's strength from the model's "
                         "strength table at its estimated noise) or @low, @medium, @high (the model's presets.json); "
                         "repeatable")
    methods.add_argument("--redcnn", type=Path, metavar="DIR", help="RED-CNN checkpoint folder (supervised baseline)")
    methods.add_argument("--baselines", type=_names, default=("input", "nlm"),
                         help="classical methods: input,nlm[,bm3d]; nlm-sigma, bm3d-sigma: given the true noise level (default: input,nlm)")
    p.add_argument("--protocol", dest="protocols", action="append", choices=sorted(PROTOCOLS) + ["ldctbench:chest", "ldctbench:head"],
                   help="metric protocol (repeatable; default: redcnn)")
    p.add_argument("--window", default="abdomen", choices=sorted(WINDOWS), help="display window of the figures")
    p.add_argument("--figure-slices", type=_ints, default=None, help="slice indices to draw (default: middle slice)")
    p.add_argument("--sweep-dose", type=_floats, default=None, metavar="K,K,...", help="generalisation report: dose fractions")
    p.add_argument("--sweep-sigma", type=_floats, default=(), metavar="S,S,...",
                   help="generalisation report: Gaussian sigmas in 1/255 of the model scale (training: 5)")
    p.add_argument("--sweep-max-slices", type=int, default=32, help="slices per case in the sweep (default: %(default)s)")
    p.add_argument("--clean-check", action="store_true",
                   help="also run every method on a noiseless textured phantom and on the normal-dose slices "
                   "themselves, and report how much each changes them (OUTDIR/clean_check)")
    p.add_argument("--seed", type=int, default=0, help="seed of every simulated noise")
    add_device_option(inference_group(p))
    add_batch_size_option(inference_group(p), help="slices per forward pass (default: 2 on CPU, 16 on GPU; --redcnn: 4)")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUTDIR",
                   help="output folder: metrics.csv, summary.json, summary.md, figures/ (and sweep/)")
    p.set_defaults(func=run)


def build_cases(args: argparse.Namespace) -> tuple[list[CaseSpec], dict, bool]:
    """The cases, a description of the data for the summary, and whether a paired evaluation runs."""
    patients = None if args.patients in (None, ("all",)) else args.patients
    if args.mayo is not None:
        if args.low or args.full:
            raise argparse.ArgumentTypeError("--mayo excludes --low/--full")
        mayo_patients = None if args.patients == ("all",) else (args.patients or ("L506",))
        cases = mayo_cases(args.mayo, mayo_patients, args.thickness)
        return cases, {"mode": "mayo2016", "root": str(args.mayo), "thickness": args.thickness}, True
    if args.full is None:
        raise argparse.ArgumentTypeError("give --mayo ROOT, or --full DIR with --low DIR or --simulate-dose K")
    if args.low is not None:
        if args.simulate_dose is not None:
            raise argparse.ArgumentTypeError("--low and --simulate-dose exclude each other")
        return [pair_case(args.low, args.full)], {"mode": "pair", "low": str(args.low), "full": str(args.full)}, True
    paired = args.simulate_dose is not None
    if not paired and args.sweep_dose is None and not args.sweep_sigma and not args.clean_check:
        raise argparse.ArgumentTypeError("--full alone needs --low, --simulate-dose, a sweep (--sweep-dose/--sweep-sigma) or --clean-check")
    dose = args.simulate_dose if paired else 0.25
    cases = simulated_cases(args.full, dose, patients, seed=args.seed, kernel=args.kernel)
    description = {"mode": "simulated", "full": str(args.full), "simulated_dose": dose, "seed": args.seed,
                   "simulator": f"ctdenoise.simulate.simulate_low_dose (I0 1e5, 720 views, {args.kernel} kernel)"}
    return cases, description, paired


def build_methods(args: argparse.Namespace) -> list[Method]:
    """The classical baselines, then the CLIPDenoiser, then RED-CNN, as the arguments ask."""
    methods = [classical_method(name) for name in args.baselines]
    if args.model != NO_MODEL:
        methods.append(clip_model_method(args.model, args.model_name, args.device, args.batch_size))
    for name, model, strength in args.variants:
        methods.append(clip_model_method(model, name, args.device, args.batch_size, strength))
    if args.redcnn is not None:
        methods.append(redcnn_method(args.redcnn, device=args.device, batch_size=args.batch_size or 4))
    return methods


def run(args: argparse.Namespace) -> int:
    try:
        cases, description, paired = build_cases(args)
    except argparse.ArgumentTypeError as error:
        print(f"ctdenoise evaluate: error: {error}", file=sys.stderr)
        return EXIT_USAGE
    protocols = tuple(args.protocols or ("redcnn",))
    methods = build_methods(args)
    log.info("methods: %s; cases: %s", ", ".join(m.name for m in methods), ", ".join(c.name for c in cases))
    if paired:
        settings = EvaluationSettings(protocols=protocols, window=args.window, figure_slices=args.figure_slices)
        with tqdm(unit="slice", desc="evaluating", disable=None, file=sys.stderr) as bar:
            summary = evaluate_cases(cases, methods, args.output, settings, bar.update, description)
        log.info("%d slices evaluated; wrote %s", summary["data"]["slices"], args.output)
        print((args.output / "summary.md").read_text(encoding="utf-8"))
    if args.clean_check:
        run_clean_check(cases, methods, args.output / CLEAN_CHECK_DIR)
        print((args.output / CLEAN_CHECK_DIR / "clean_check.md").read_text(encoding="utf-8"))
    if args.sweep_dose is not None or args.sweep_sigma:
        sweep = SweepSettings(doses=args.sweep_dose or (), sigmas=args.sweep_sigma, protocols=protocols,
                              seed=args.seed, max_slices_per_case=args.sweep_max_slices, kernel=args.kernel)
        total = len(sweep.conditions()) * len(cases)
        with tqdm(total=total, unit="case-condition", desc="sweep", disable=None, file=sys.stderr) as bar:
            run_sweep(cases, methods, args.output / "sweep", sweep, lambda _: bar.update(1))
        print((args.output / "sweep" / "sweep.md").read_text(encoding="utf-8"))
    return EXIT_OK
