"""Long fuzz run of the ctdenoise readers (the CI run in tests/test_fuzz_readers.py is a short, fixed sample).

Random mode (default): mutates the seed corpus in ``tests/fuzz_corpus`` with seeded random
truncations, byte flips, element value lengths, pixel-module attribute values, extreme rescale values,
a photometric interpretation that does not match the (compressed) pixel data (which makes GDCM's decoder
abort its process), a Transfer Syntax UID of the wrong VR, and NIfTI header fields and scaling; reads each
case as the batch runner does and checks the same oracle as the tests: a well-formed Volume with finite HU
or an InputError naming the file, under the time and allocation bounds. Prints the number of cases per
mutation and outcome and a summary (process aborts, raw exceptions, non-finite volumes); failing inputs are
kept in ``--keep``. A decoder that aborts must cost a PixelDataError ("decoder crashed"), counted as such:
were the fuzzing process itself aborted, the run would end without its summary (exit status 134).

    python scripts/fuzz_long.py --dicom 10000 --nifti 1000 --seed 1
    python scripts/fuzz_long.py --cases 20000 --seed 1       # a quarter of them NIfTI
    cp -r tests/fuzz_corpus /tmp/corpus    # libFuzzer adds new inputs to its corpus folder: use a copy
    python scripts/fuzz_long.py --atheris -- -runs=50000 -max_len=60000 /tmp/corpus   # coverage-guided (pip install atheris)

Exit status: 0 if every case met the oracle, 1 otherwise.
"""

from __future__ import annotations

import argparse
import random
import struct
import sys
import tempfile
import time
import traceback
import warnings
from collections import Counter
from pathlib import Path

import pydicom

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fuzz_corpus.mutations import (
    DICOM_SEEDS,
    NIFTI_FIELDS,
    NIFTI_SEED,
    check_outcome,
    flip_bytes,
    read_measured,
    set_length,
    set_nifti_field,
    set_value,
    truncate,
)

ABSURD_INTEGERS = (0, 1, 2, 7, 12, 24, 33, 64, 255, 32767, 65535, 2**31 - 1)
ABSURD_DECIMALS = ("0", "-1", "nan", "inf", "-inf", "1e308", "x", "")
EXTREME_RESCALES = ("-1e308", "1e308", "1e300", "-1e300", "3.4e38", "-3.5e38", "1e38", "1e-308", "-0", "65536")
PHOTOMETRIC = ("YBR_FULL", "YBR_FULL_422", "YBR_RCT", "YBR_ICT", "RGB", "PALETTE COLOR", "MONOCHROME1", "HSV", "")
WRONG_UID_VRS = (b"SH", b"LO", b"CS", b"US", b"UL", b"SS", b"DS", b"IS", b"AE", b"AT", b"FL", b"UN")
NIFTI_SCALES = (float("inf"), float("-inf"), float("nan"), 1e38, -1e38, 3.4e38, 0.0, 1e-38)


def _saved(ds: pydicom.Dataset) -> bytes | None:
    """``ds`` as file bytes, or None when pydicom refuses to write it."""
    with tempfile.SpooledTemporaryFile() as buffer:
        try:
            ds.save_as(buffer, enforce_file_format=False)
        except Exception:  # noqa: BLE001 - pydicom refuses to write some combinations
            return None
        buffer.seek(0)
        return buffer.read()


def _pixel_module(ds: pydicom.Dataset, rng: random.Random) -> None:
    for _ in range(rng.randint(1, 4)):
        keyword = rng.choice(("Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "HighBit",
                              "PixelRepresentation", "SamplesPerPixel", "RescaleSlope", "RescaleIntercept", "PixelData"))
        if keyword == "PixelData":
            ds.PixelData = ds.PixelData[: rng.randrange(len(ds.PixelData) + 1)]
        elif keyword in ("RescaleSlope", "RescaleIntercept", "NumberOfFrames"):
            set_value(ds, keyword, rng.choice(ABSURD_DECIMALS + tuple(str(v) for v in ABSURD_INTEGERS)))
        else:
            set_value(ds, keyword, rng.choice(ABSURD_INTEGERS[:11]))


def _rescale(ds: pydicom.Dataset, rng: random.Random) -> None:
    for keyword in rng.sample(("RescaleSlope", "RescaleIntercept"), rng.randint(1, 2)):
        set_value(ds, keyword, rng.choice(EXTREME_RESCALES))


def _photometric(ds: pydicom.Dataset, rng: random.Random) -> None:
    ds.PhotometricInterpretation = rng.choice(PHOTOMETRIC)


def _wrong_uid_vr(data: bytes, rng: random.Random) -> bytes:
    """The (0002,0010) Transfer Syntax UID element given another short-form VR, its bytes unchanged."""
    at = data.find(b"\x02\x00\x10\x00UI")
    return data if at < 0 else data[: at + 4] + rng.choice(WRONG_UID_VRS) + data[at + 6:]


DATASET_MUTATIONS = {"pixel_module": _pixel_module, "rescale": _rescale, "photometric": _photometric}


def mutate_dicom(rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of a random DICOM seed: (mutation name, file bytes)."""
    seed = rng.choice(DICOM_SEEDS)
    data = seed.read_bytes()
    kind = rng.choice(("truncate", "flip", "length", "pixel_module", "rescale", "photometric", "uid_vr"))
    if kind == "truncate":
        return kind, truncate(data, rng.random())
    if kind == "flip":
        return kind, flip_bytes(data, [(rng.randrange(len(data)), rng.randrange(256)) for _ in range(rng.randint(1, 32))])
    if kind == "length":
        return kind, set_length(data, rng.randrange(10_000), rng.choice([0, 1, 0xFFFF, 0xFFFFFFFF, rng.randrange(2**32)]))
    if kind == "uid_vr":
        return kind, _wrong_uid_vr(data, rng)
    ds = pydicom.dcmread(seed)
    DATASET_MUTATIONS[kind](ds, rng)
    saved = _saved(ds)
    if saved is None:
        return "flip", flip_bytes(data, [(rng.randrange(len(data)), rng.randrange(256))])
    return kind, saved


def mutate_nifti(rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of the NIfTI seed: header fields set to random bytes (maybe truncated), or its
    scaling set to extreme values."""
    data = NIFTI_SEED.read_bytes()
    if rng.random() < 0.3:
        slope, inter = rng.choice(NIFTI_SCALES), rng.choice(NIFTI_SCALES + (0.0, 0.0))
        return "nifti_scaling", set_nifti_field(set_nifti_field(data, "scl_slope", (slope,)), "scl_inter", (inter,))
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(sorted(NIFTI_FIELDS))
        offset, fmt = NIFTI_FIELDS[name]
        size = struct.calcsize(fmt)
        data = data[:offset] + rng.randbytes(size) + data[offset + size:]
    if rng.random() < 0.2:
        data = truncate(data, rng.random())
    return "nifti_header", data


def _outcome_name(path: Path) -> str:
    """The oracle's verdict on reading ``path``; a decoder crash contained in its worker process is named."""
    outcome = read_measured(path)
    name = check_outcome(outcome, path)
    if outcome.error is not None and "decoder crashed" in outcome.error.problem:
        return f"{name} (decoder crashed)"
    return name


def _violation(exc: BaseException) -> str:
    if isinstance(exc, AssertionError) and "NaN or infinite" in str(exc):
        return "non-finite volume"
    if isinstance(exc, AssertionError):
        return "time or memory bound"
    return "raw exception"


def run_random(dicom: int, nifti: int, seed: int, keep: Path) -> int:
    """Read ``dicom`` mutated DICOM and ``nifti`` mutated NIfTI files (in a seeded random order) and report."""
    rng = random.Random(seed)
    order = [False] * dicom + [True] * nifti
    rng.shuffle(order)
    counts: Counter[tuple[str, str]] = Counter()
    violations: Counter[str] = Counter()
    done = Counter()  # cases read, per format
    stopped = False
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        try:
            for case, is_nifti in enumerate(order):
                kind, data = (mutate_nifti if is_nifti else mutate_dicom)(rng)
                path = Path(work) / f"case{case}{'.nii' if is_nifti else '.dcm'}"
                path.write_bytes(data)
                try:
                    counts[(kind, _outcome_name(path))] += 1
                except KeyboardInterrupt:
                    raise
                except BaseException as exc:  # noqa: BLE001 - report every oracle violation (panics too), then go on
                    violations[_violation(exc)] += 1
                    counts[(kind, f"FAIL {type(exc).__name__}")] += 1
                    keep.mkdir(parents=True, exist_ok=True)
                    (keep / path.name).write_bytes(data)
                    (keep / f"{path.name}.txt").write_text("".join(traceback.format_exception(exc)))
                path.unlink()
                done["nifti" if is_nifti else "dicom"] += 1
                if (case + 1) % 1000 == 0:
                    print(f"  ... {case + 1} cases, {sum(violations.values())} violations, "
                          f"{time.perf_counter() - started:.0f} s", flush=True)
        except KeyboardInterrupt:  # Ctrl-C (SIGINT): report the cases read so far
            stopped = True
    failures = sum(violations.values())
    crashes = sum(n for (_, outcome), n in counts.items() if "decoder crashed" in outcome)
    print(f"{done['dicom'] + done['nifti']} cases ({done['dicom']} DICOM, {done['nifti']} NIfTI) in "
          f"{time.perf_counter() - started:.0f} s (seed {seed}), {failures} oracle violations"
          + (f"; STOPPED EARLY (SIGINT) of {dicom} DICOM and {nifti} NIfTI planned" if stopped else ""))
    print(f"  process aborts: 0 (this process ran to its summary); decoder crashes contained in a worker: {crashes}; "
          f"raw exceptions: {violations['raw exception']}; non-finite volumes: {violations['non-finite volume']}; "
          f"time or memory bound exceeded: {violations['time or memory bound']}")
    for (kind, outcome), count in sorted(counts.items()):
        print(f"  {kind:14s} {outcome:40s} {count}")
    return 1 if failures or stopped else 0


def run_atheris(argv: list[str]) -> int:
    import atheris

    atheris.instrument_all()  # the readers are imported already: instrument every loaded Python function
    work = Path(tempfile.mkdtemp(prefix="ctdenoise-atheris-"))

    def one_input(data: bytes) -> None:
        path = work / ("case.nii" if data[:4] in (b"\x5c\x01\x00\x00", b"\x00\x00\x01\x5c") else "case.dcm")
        path.write_bytes(data)
        check_outcome(read_measured(path), path)

    atheris.Setup([sys.argv[0], *argv], one_input)
    atheris.Fuzz()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=5000, help="cases, a quarter of them NIfTI (unless --dicom/--nifti)")
    parser.add_argument("--dicom", type=int, default=None, help="mutated DICOM files to read")
    parser.add_argument("--nifti", type=int, default=None, help="mutated NIfTI files to read")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=Path("fuzz_failures"), help="folder for failing inputs")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided fuzzing with atheris (libFuzzer)")
    parser.add_argument("libfuzzer_args", nargs="*", help="arguments after -- go to libFuzzer")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.CRITICAL)  # pydicom/nibabel log every damaged value
    if args.atheris:
        return run_atheris(args.libfuzzer_args)
    if args.dicom is None and args.nifti is None:
        nifti = args.cases // 4
        return run_random(args.cases - nifti, nifti, args.seed, args.keep)
    return run_random(args.dicom or 0, args.nifti or 0, args.seed, args.keep)


if __name__ == "__main__":
    sys.exit(main())
