"""``ctdenoise simulate``: write a physics-simulated low-dose copy of a normal-dose series or volume."""

from __future__ import annotations

import argparse
from pathlib import Path

from ctdenoise.cli import COMMAND_HELP, EXIT_OK
from ctdenoise.io import DicomOutput, read_volume, write_volume
from ctdenoise.recon_kernels import BOWTIE_NAMES, KERNELS
from ctdenoise.simulate import DEFAULT_ELECTRONIC_NOISE_VAR, DEFAULT_I0, DEFAULT_N_VIEWS, simulate_low_dose


def add_parser(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "simulate",
        help=COMMAND_HELP["simulate"],
        description="Simulate a reduced-dose acquisition of INPUT (a DICOM series folder/file or a NIfTI/NRRD/MHA "
        "volume) with Poisson + electronic noise in a parallel-beam projection domain (Zeng et al. 2015) and "
        "write it to OUT: a derived DICOM series folder for DICOM input (or --format), else an image file. "
        "Use it to make paired low/normal-dose data from your own scans.",
    )
    p.add_argument("input", type=Path, metavar="INPUT", help="normal-dose DICOM series (folder or file) or NIfTI/NRRD/MHA file")
    p.add_argument("-o", "--output", required=True, type=Path, metavar="OUT",
                   help="derived DICOM series folder, or image file (.nii.gz, .nrrd, .mha, ...)")
    p.add_argument("--dose", type=float, default=0.25, help="dose fraction k in (0, 1] (default: %(default)s)")
    p.add_argument("--i0", type=float, default=DEFAULT_I0, help="full-dose photons per ray and view (default: %(default)g)")
    p.add_argument("--electronic-noise-var", type=float, default=DEFAULT_ELECTRONIC_NOISE_VAR,
                   help="variance of the electronic (detector) noise added to the photon counts (default: %(default)s)")
    p.add_argument("--views", type=int, default=DEFAULT_N_VIEWS, help="projection views over 180 degrees (default: %(default)s)")
    p.add_argument("--kernel", choices=tuple(KERNELS), default="hann",
                   help="reconstruction kernel, i.e. the noise texture: smooth / standard / sharp have NPS peaks near "
                   "0.17 / 0.31 / 0.55 cycles/mm at any pixel size; ramp, shepp-logan, cosine and hann are cut off at "
                   "the pixel grid's Nyquist frequency (default: %(default)s)")
    p.add_argument("--bowtie", choices=BOWTIE_NAMES, default="none",
                   help="shaped filter of the fan: less flux, more noise towards the edge (default: %(default)s)")
    p.add_argument("--slices-averaged", type=int, default=1, metavar="N",
                   help="thin slices averaged into each output slice: a thick slice has about 1/sqrt(N) of the "
                   "thin-slice noise (default: %(default)s)")
    p.add_argument("--seed", type=int, default=0, help="random seed; the same seed gives the same noise")
    p.add_argument("--format", dest="output_format", default="same", choices=("same", "dicom", "nifti"),
                   help="'same': a derived DICOM series for DICOM input, else the input's file format; 'nifti' adds "
                   ".nii.gz to OUT if needed (default: %(default)s)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    volume = read_volume(args.input)
    low_dose = simulate_low_dose(
        volume.hu,
        (volume.spacing[1], volume.spacing[2]),
        dose_fraction=args.dose,
        i0=args.i0,
        electronic_noise_var=args.electronic_noise_var,
        n_views=args.views,
        kernel=args.kernel,
        bowtie=args.bowtie,
        slices_averaged=args.slices_averaged,
        seed=args.seed,
    )
    description = (
        f"ctdenoise simulated low dose: k={args.dose:g}, I0={args.i0:g}, electronic noise var="
        f"{args.electronic_noise_var:g}, {args.views} views, {args.kernel} kernel, bowtie {args.bowtie}, "
        f"{args.slices_averaged} slice(s) averaged, seed {args.seed}"
    )
    written = write_volume(volume, low_dose, args.output, format=args.output_format,
                           dicom=DicomOutput(f"simulated dose {args.dose:g}", description))
    print(f"wrote {len(written)} file(s) to {args.output}")
    return EXIT_OK
