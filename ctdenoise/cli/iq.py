"""``ctdenoise iq``: image quality as CT physicists measure it (AAPM TG-233) on a digital phantom or on scans."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from ctdenoise.cli import EXIT_OK
from ctdenoise.cli.options import add_model_options, engine_settings, positive_int, strength_value
from ctdenoise.runtime.options import DEFAULT_STRENGTH

log = logging.getLogger("ctdenoise.iq")

DEFAULT_DOSES = (0.25, 0.5, 1.0)
DEFAULT_STRENGTHS = (DEFAULT_STRENGTH, 0.5, 1.0)


def insert_value(text: str):
    """``--insert ROW,COL,RADIUS`` in pixels."""
    from ctdenoise.iq.layout import Insert

    try:
        row, col, radius = (float(part) for part in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not ROW,COL,RADIUS (three numbers, in pixels)") from None
    if radius <= 0:
        raise argparse.ArgumentTypeError(f"{text}: the radius must be positive")
    return Insert(row, col, radius)


def numeric_strength(text: str) -> float:
    value = strength_value(text)
    if not isinstance(value, float):
        raise argparse.ArgumentTypeError("ctdenoise iq measures fixed strengths; give numbers from 0 to 1")
    return value


def dose_value(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is outside (0, 1] (a fraction of full dose)")
    return value


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    from ctdenoise.recon_kernels import KERNELS

    p = subparsers.add_parser(
        "iq",
        conflict_handler="resolve",  # --strength below replaces the single one of add_model_options
        help="measure image quality as CT physicists do (noise, NPS, TTF, d')",
        description="Measure noise, noise power spectrum (NPS, f_av, f_peak), task transfer function of circular "
        "inserts (TTF50, TTF10) and detectability (d' of NPW and NPWE observers) as AAPM TG-233 describes, for the "
        "input, the model at several strengths and NLM, and write OUT/iq.json and a self-contained OUT/report.html. "
        "Without --scan: a digital phantom (water cylinder with rods of +955, +120, -95 and +35 HU, blurred by a "
        "known Gaussian) is scanned through the low-dose simulation at every --dose and --kernel, which also gives "
        "each method's dose-reduction potential. With --scan: the physicist's own repeated scans of a phantom, "
        "every slice of every series one realisation of the same section.",
    )
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT", help="output folder for iq.json and report.html")
    p.add_argument("--scan", action="append", type=Path, default=None, metavar="DIR",
                   help="a DICOM series (folder or file) or NIfTI/NRRD/MHA volume of repeated scans of one phantom "
                   "section; repeatable (every slice of every series is one realisation)")
    p.add_argument("--insert", action="append", type=insert_value, default=None, metavar="ROW,COL,RADIUS",
                   help="with --scan: a circular insert's centre and radius in pixels (repeatable); default: inserts of "
                   "10 mm or more are found automatically")
    add_model_options(p)  # --model and the inference options exactly as ctdenoise denoise declares them
    p.add_argument("--strength", action="append", type=numeric_strength, default=None, metavar="S",
                   help=f"a model strength to measure, 0..1 (repeatable; default: {', '.join(f'{s:g}' for s in sorted(set(DEFAULT_STRENGTHS)))})")
    p.add_argument("--no-model", action="store_true", help="measure the input and NLM only")
    p.add_argument("--no-nlm", action="store_true", help="leave out non-local means")
    p.add_argument("--dose", action="append", type=dose_value, default=None, metavar="K",
                   help=f"phantom: a simulated dose fraction (repeatable; default: {', '.join(map(str, DEFAULT_DOSES))}; "
                   "1 is always added as the reference of the dose-reduction potential)")
    p.add_argument("--report-dose", type=dose_value, default=0.25, metavar="K",
                   help="phantom: the dose whose numbers are iq.json's methods (default: %(default)s)")
    p.add_argument("--kernel", action="append", choices=tuple(KERNELS), default=None, metavar="NAME",
                   help=f"phantom: reconstruction kernel, repeatable ({', '.join(KERNELS)}; default: standard)")
    p.add_argument("--realisations", type=positive_int, default=12, metavar="N",
                   help="phantom: repeated scans per dose and kernel (default: %(default)s)")
    p.add_argument("--size", type=positive_int, default=256, metavar="PX", help="phantom: image side in pixels (default: %(default)s)")
    p.add_argument("--pixel", type=float, default=0.8, metavar="MM", help="phantom: pixel size in mm (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="phantom: random seed of the simulated scans (default: %(default)s)")
    p.add_argument("--task-diameter", type=float, default=5.0, metavar="MM", help="d' task: disk diameter (default: %(default)s)")
    p.add_argument("--task-contrast", type=float, default=35.0, metavar="HU", help="d' task: disk contrast (default: %(default)s)")
    p.add_argument("--roi-size", type=float, default=None, metavar="MM",
                   help="side of the square noise and NPS ROIs (default: 25 mm, at least 16 pixels)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ctdenoise.iq.detectability import DiskTask
    from ctdenoise.iq.methods import model_methods, nlm_method
    from ctdenoise.iq.report import write_outputs

    task = DiskTask(args.task_diameter, args.task_contrast)
    methods = []
    if not args.no_model:
        methods += model_methods(args.model, args.strength or list(DEFAULT_STRENGTHS), settings=engine_settings(args),
                                 clip_weights=args.clip_weights)
    if not args.no_nlm:
        methods.append(nlm_method())
    if args.scan:
        result = _run_scans(args, methods, task)
    else:
        result = _run_phantom(args, methods, task)
    if not args.no_model:
        from ctdenoise.registry import model_label

        result.summary["settings"]["model"] = model_label(args.model)  # name@tensors-sha256 prefix
    json_path, html_path = write_outputs(result, args.output)
    for method in result.summary["methods"]:
        ttf50 = ", ".join(f"{i['ttf50']}" for i in method["inserts"])
        print(f"{method['name']:>14}: noise {method['noise_hu']:7.2f} HU, f_av {method['nps']['f_av']:.3f} cycles/mm, "
              f"TTF50 [{ttf50}] cycles/mm, d' {method['dprime']}")
    print(f"wrote {json_path} and {html_path}")
    return EXIT_OK


def _run_phantom(args: argparse.Namespace, methods: list, task):
    from ctdenoise.iq.phantom import DigitalPhantom
    from ctdenoise.iq.protocol import PhantomProtocol, run_protocol

    phantom = DigitalPhantom(size_px=args.size, pixel_mm=args.pixel)
    protocol = PhantomProtocol(phantom=phantom, doses=tuple(args.dose or DEFAULT_DOSES),
                               kernels=tuple(dict.fromkeys(args.kernel or ["standard"])), realisations=args.realisations,
                               seed=args.seed, task=task, report_dose=args.report_dose)
    if args.roi_size is not None:
        log.warning("--roi-size applies to --scan; the phantom's ROIs follow its geometry")
    return run_protocol(methods, protocol)


def _run_scans(args: argparse.Namespace, methods: list, task):
    from ctdenoise.iq.layout import ROI_SIZE_MM, find_layout
    from ctdenoise.iq.protocol import run_scan_protocol
    from ctdenoise.iq.scans import check_repeated, read_scans

    scans = read_scans(args.scan, workers=args.io_workers)
    layout = find_layout(scans.hu, scans.spacing_mm, inserts=args.insert, roi_size_mm=args.roi_size or ROI_SIZE_MM,
                         source=", ".join(scans.series))
    check_repeated(scans, layout)
    log.info("%d realisations, %d inserts, %d uniform ROIs of %d px", len(scans.hu), len(layout.inserts),
             len(layout.rois), layout.rois[0].size)
    return run_scan_protocol(scans.hu, scans.spacing_mm, layout, methods, task=task, sources=scans.series)
