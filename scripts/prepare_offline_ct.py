"""Collect the real CT slices that ship with pydicom and pydicom-data into one training folder.

Usage: ``python scripts/prepare_offline_ct.py runs/offline_ct``

Scans pydicom's bundled test files and the installed ``pydicom-data`` package (both local: nothing is
downloaded), keeps CT images of at least ``--min-size`` pixels a side, and removes duplicates: several
files hold the same slice in different encodings (e.g. ``693_UNCR``/``693_J2KR`` lossless and
``693_UNCI``/``693_J2KI`` lossy), recognised by (study, series, image position, frame count). Of each
group the best encoding is kept: lossless before lossy, uncompressed before compressed. Each kept file
is copied to ``OUT/<PatientID>/<file name>``, so ``split_by: patient`` splits by these folders, and
``OUT/SOURCES.json`` lists what was kept and what was dropped, and why.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

LOSSY_SYNTAX_WORDS = ("Baseline", "Extended", "Lossy", "Image Compression")  # JPEG baseline/extended, J2K (lossy allowed)


def local_dicom_stores() -> list[Path]:
    """pydicom's own test files and, when installed, pydicom-data's files."""
    stores = [Path(pydicom.data.__file__).parent / "test_files"]
    try:
        from data_store import DataStore
    except ImportError:
        return stores
    return stores + [Path(DataStore().data_path)]


def read_ct_header(path: Path) -> Dataset | None:
    """The header of ``path`` if it is a CT image with pixel data, else None."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=False, defer_size=1024)
    except Exception:  # noqa: BLE001 - anything unreadable is simply not a candidate
        return None
    if ds.get("Modality") != "CT" or "PixelData" not in ds:
        return None
    return ds


def encoding_rank(ds: Dataset) -> tuple[int, int]:
    """Sort key, smaller is better: (lossy?, compressed?)."""
    syntax = ds.file_meta.get("TransferSyntaxUID")
    lossy = ds.get("LossyImageCompression") == "01" or (
        syntax is not None and syntax.is_compressed and "Lossless" not in syntax.name
        and any(word in syntax.name for word in LOSSY_SYNTAX_WORDS)
    )
    compressed = syntax is not None and syntax.is_compressed
    return (int(lossy), int(compressed))


def slice_identity(ds: Dataset) -> tuple:
    """What makes two files the same image: study, series, position and frame count."""
    position = tuple(round(float(v), 2) for v in ds.get("ImagePositionPatient", []) or [])
    return (ds.get("StudyInstanceUID"), ds.get("SeriesInstanceUID"), position, int(ds.get("NumberOfFrames", 1) or 1))


def collect(min_size: int) -> tuple[list[tuple[Path, Dataset]], list[dict]]:
    """The kept (path, header) pairs, one per distinct slice, and a record of every dropped file."""
    groups: dict[tuple, list[tuple[Path, Dataset]]] = {}
    dropped = []
    for store in local_dicom_stores():
        for path in sorted(p for p in store.rglob("*") if p.is_file()):
            ds = read_ct_header(path)
            if ds is None:
                continue
            if min(int(ds.Rows), int(ds.Columns)) < min_size:
                dropped.append({"file": path.name, "reason": f"{ds.Rows}x{ds.Columns} is below {min_size} pixels"})
                continue
            groups.setdefault(slice_identity(ds), []).append((path, ds))
    kept = []
    for members in groups.values():
        members.sort(key=lambda item: (encoding_rank(item[1]), item[0].name))
        kept.append(members[0])
        dropped += [{"file": p.name, "reason": f"same slice as {members[0][0].name} (worse or equal encoding)"}
                    for p, _ in members[1:]]
    return kept, dropped


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="folder to create (one subfolder per patient)")
    parser.add_argument("--min-size", type=int, default=128, help="smallest accepted rows/columns (default 128)")
    args = parser.parse_args()
    kept, dropped = collect(args.min_size)
    args.output.mkdir(parents=True, exist_ok=True)
    records = []
    for path, ds in kept:
        patient = re.sub(r"[^A-Za-z0-9_.-]", "_", str(ds.get("PatientID") or path.stem)) or path.stem
        target = args.output / patient / path.name
        target.parent.mkdir(exist_ok=True)
        shutil.copy2(path, target)
        records.append({
            "patient_folder": patient, "file": path.name, "from": str(path.parent), "rows": int(ds.Rows),
            "columns": int(ds.Columns), "frames": int(ds.get("NumberOfFrames", 1) or 1),
            "transfer_syntax": ds.file_meta.TransferSyntaxUID.name, "body_part": str(ds.get("BodyPartExamined", "")),
            "manufacturer": str(ds.get("Manufacturer", "")),
        })
        print(f"kept {patient}/{path.name} ({ds.Rows}x{ds.Columns}, {ds.file_meta.TransferSyntaxUID.name})")
    (args.output / "SOURCES.json").write_text(json.dumps({"kept": records, "dropped": dropped}, indent=2) + "\n")
    print(f"{len(records)} distinct CT images kept, {len(dropped)} files dropped; see {args.output / 'SOURCES.json'}")


if __name__ == "__main__":
    main()
