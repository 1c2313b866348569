"""Long fuzz run of the ctdenoise readers (the CI run in tests/test_fuzz_readers.py is a short, fixed sample).

Random mode (default): mutates the seed corpus in ``tests/fuzz_corpus`` with seeded random
truncations, byte flips, element value lengths, pixel-module attribute values and NIfTI header
fields, reads each case as the batch runner does and checks the same oracle as the tests: a
well-formed Volume or an InputError naming the file, under the time and allocation bounds.
Prints the number of cases per mutation and outcome; failing inputs are kept in ``--keep``.

    python scripts/fuzz_long.py --cases 20000 --seed 1
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

from fuzz_corpus.mutations import (  # noqa: E402
    DICOM_SEEDS,
    NIFTI_FIELDS,
    NIFTI_SEED,
    check_outcome,
    flip_bytes,
    read_measured,
    set_length,
    set_value,
    truncate,
)

ABSURD_INTEGERS = (0, 1, 2, 7, 12, 24, 33, 64, 255, 32767, 65535, 2**31 - 1)
ABSURD_DECIMALS = ("0", "-1", "nan", "inf", "-inf", "1e308", "x", "")


def mutate_dicom(rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of a random DICOM seed: (mutation name, file bytes)."""
    seed = rng.choice(DICOM_SEEDS)
    data = seed.read_bytes()
    kind = rng.choice(("truncate", "flip", "length", "pixel_module"))
    if kind == "truncate":
        return kind, truncate(data, rng.random())
    if kind == "flip":
        return kind, flip_bytes(data, [(rng.randrange(len(data)), rng.randrange(256)) for _ in range(rng.randint(1, 32))])
    if kind == "length":
        return kind, set_length(data, rng.randrange(10_000), rng.choice([0, 1, 0xFFFF, 0xFFFFFFFF, rng.randrange(2**32)]))
    ds = pydicom.dcmread(seed)
    for _ in range(rng.randint(1, 4)):
        keyword = rng.choice(("Rows", "Columns", "NumberOfFrames", "BitsAllocated", "BitsStored", "HighBit",
                              "PixelRepresentation", "SamplesPerPixel", "RescaleSlope", "RescaleIntercept", "PixelData"))
        if keyword == "PixelData":
            ds.PixelData = ds.PixelData[: rng.randrange(len(ds.PixelData) + 1)]
        elif keyword in ("RescaleSlope", "RescaleIntercept", "NumberOfFrames"):
            set_value(ds, keyword, rng.choice(ABSURD_DECIMALS + tuple(str(v) for v in ABSURD_INTEGERS)))
        else:
            set_value(ds, keyword, rng.choice(ABSURD_INTEGERS[:11]))
    with tempfile.SpooledTemporaryFile() as buffer:
        try:
            ds.save_as(buffer)
        except Exception:  # noqa: BLE001 - pydicom refuses to write some combinations: fall back to a flip
            return "flip", flip_bytes(data, [(rng.randrange(len(data)), rng.randrange(256))])
        buffer.seek(0)
        return kind, buffer.read()


def mutate_nifti(rng: random.Random) -> tuple[str, bytes]:
    """One random mutation of the NIfTI seed: header fields set to random bytes, maybe truncated."""
    data = NIFTI_SEED.read_bytes()
    for _ in range(rng.randint(1, 3)):
        name = rng.choice(sorted(NIFTI_FIELDS))
        offset, fmt = NIFTI_FIELDS[name]
        size = struct.calcsize(fmt)
        data = data[:offset] + rng.randbytes(size) + data[offset + size:]
    if rng.random() < 0.2:
        data = truncate(data, rng.random())
    return "nifti_header", data


def run_random(cases: int, seed: int, keep: Path) -> int:
    rng = random.Random(seed)
    counts: Counter[tuple[str, str]] = Counter()
    failures = 0
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as work:
        for case in range(cases):
            nifti = rng.random() < 0.25
            kind, data = (mutate_nifti if nifti else mutate_dicom)(rng)
            path = Path(work) / f"case{case}{'.nii' if nifti else '.dcm'}"
            path.write_bytes(data)
            try:
                counts[(kind, check_outcome(read_measured(path), path))] += 1
            except KeyboardInterrupt:
                raise
            except BaseException as exc:  # noqa: BLE001 - report every oracle violation (panics too), then go on
                failures += 1
                counts[(kind, f"FAIL {type(exc).__name__}")] += 1
                keep.mkdir(parents=True, exist_ok=True)
                (keep / path.name).write_bytes(data)
                (keep / f"{path.name}.txt").write_text("".join(traceback.format_exception(exc)))
            path.unlink()
    print(f"{cases} cases in {time.perf_counter() - started:.0f} s (seed {seed}), {failures} oracle violations")
    for (kind, outcome), count in sorted(counts.items()):
        print(f"  {kind:14s} {outcome:32s} {count}")
    return 1 if failures else 0


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
    parser.add_argument("--cases", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, default=Path("fuzz_failures"), help="folder for failing inputs")
    parser.add_argument("--atheris", action="store_true", help="coverage-guided fuzzing with atheris (libFuzzer)")
    parser.add_argument("libfuzzer_args", nargs="*", help="arguments after -- go to libFuzzer")
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    import logging

    logging.disable(logging.CRITICAL)  # pydicom/nibabel log every damaged value
    return run_atheris(args.libfuzzer_args) if args.atheris else run_random(args.cases, args.seed, args.keep)


if __name__ == "__main__":
    sys.exit(main())
