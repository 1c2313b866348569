"""Low-/normal-dose test pairs: the Mayo-2016 layout, a generic pair of folders, and simulated low dose.

A :class:`CaseSpec` says where one test case comes from; :meth:`CaseSpec.load` reads it into a
:class:`PairedCase` whose low- and normal-dose slices are paired **by position along the slice
normal**, never by file name or InstanceNumber: in the Mayo-2016 data the full- and quarter-dose
series have different series numbers and file names, and only their slice positions agree.

* :func:`mayo_cases`: a root holding patient folders ``L067`` ... ``L506``, each with ``full_1mm``,
  ``quarter_1mm`` (and ``full_3mm``/``quarter_3mm``) DICOM/IMA series; by default only the test
  patient ``L506`` (the split of the CLIPDenoising paper and of RED-CNN's successors).
* :func:`pair_case`: a generic ``--low DIR --full DIR`` pair (one series each).
* :func:`simulated_cases`: every normal-dose series under a folder, with a physics-simulated low dose
  (:func:`ctdenoise.simulate.simulate_low_dose`, seeded per case) as the low-dose partner.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ctdenoise.errors import ConfigError, InputError, UnpairedSlicesError
from ctdenoise.io import SeriesRef, Volume, find_series, read_volume
from ctdenoise.simulate import simulate_low_dose

#: Patient folders of the AAPM Mayo-2016 low-dose CT data.
MAYO_PATIENTS: tuple[str, ...] = ("L067", "L096", "L109", "L143", "L192", "L286", "L291", "L310", "L333", "L506")
#: The conventional held-out test patient.
MAYO_TEST_PATIENTS: tuple[str, ...] = ("L506",)
MAYO_PATIENT_PATTERN = re.compile(r"^L\d{3}$")
MAYO_THICKNESSES: tuple[str, ...] = ("1mm", "3mm")
#: Slices closer than this along the slice normal are the same position (Mayo pairs agree to 0.01 mm).
DEFAULT_POSITION_TOLERANCE_MM: float = 0.1
#: In-plane origins and pixel spacings must agree to this, in mm.
IN_PLANE_TOLERANCE_MM: float = 0.01


@dataclass(frozen=True)
class PairedCase:
    """One test case: low- and normal-dose HU slices paired by position, both (N, rows, cols) float32.

    ``positions_mm[i]`` is the position of pair ``i`` along the slice normal; pairs are ordered by it.
    ``simulated_dose`` is the dose fraction when the low dose was simulated, else None.
    """

    name: str
    patient: str
    low_hu: np.ndarray
    full_hu: np.ndarray
    positions_mm: np.ndarray
    pixel_spacing_mm: tuple[float, float]
    low_source: str
    full_source: str
    simulated_dose: float | None = None

    @property
    def n_slices(self) -> int:
        return int(self.full_hu.shape[0])


@dataclass(frozen=True)
class CaseSpec:
    """Where one case comes from. ``low=None`` means: simulate the low dose at ``simulated_dose`` with ``seed``,
    reconstructed with ``kernel`` (a :data:`ctdenoise.simulate.KERNELS` name)."""

    name: str
    patient: str
    full: Path | SeriesRef
    low: Path | SeriesRef | None = None
    simulated_dose: float | None = None
    seed: int = 0
    kernel: str = "hann"

    def __post_init__(self) -> None:
        if (self.low is None) == (self.simulated_dose is None):
            raise ConfigError("low", f"case {self.name}: give either a low-dose series or a simulated dose, not both")

    def load_full(self) -> Volume:
        """The normal-dose volume alone (what a dose sweep needs)."""
        return read_volume(self.full)

    def load(self) -> PairedCase:
        """Read both series and pair their slices (UnpairedSlicesError when they cannot be paired)."""
        full = self.load_full()
        if self.low is None:
            assert self.simulated_dose is not None
            low_hu = simulate_low_dose(
                full.hu, full.spacing[1:], dose_fraction=self.simulated_dose, kernel=self.kernel,
                seed=case_seed(self.seed, self.name),
            )
            return PairedCase(
                self.name, self.patient, low_hu, full.hu, slice_positions(full), full.spacing[1:],
                f"simulated dose {self.simulated_dose:g} ({self.kernel} kernel) of {full.source_path}", str(full.source_path),
                simulated_dose=self.simulated_dose,
            )
        low = read_volume(self.low)
        return pair_volumes(low, full, name=self.name, patient=self.patient)


def case_seed(seed: int, name: str) -> np.random.Generator:
    """The noise generator of case ``name`` under run seed ``seed``: independent of case order."""
    return np.random.default_rng([seed, zlib.crc32(name.encode())])


def slice_positions(volume: Volume, normal: np.ndarray | None = None) -> np.ndarray:
    """Position (mm) of every slice centre along ``normal`` (default: the volume's own slice normal)."""
    if normal is None:
        normal = slice_normal(volume)
    k = np.arange(volume.shape[0], dtype=np.float64)
    centres = volume.affine[:3, 3][None, :] + k[:, None] * volume.affine[:3, 2][None, :]
    return centres @ normal


def slice_normal(volume: Volume) -> np.ndarray:
    """Unit normal of the slice planes (cross product of the row and column directions)."""
    normal = np.cross(volume.direction[:, 0], volume.direction[:, 1])
    return normal / np.linalg.norm(normal)


def _check_in_plane(low: Volume, full: Volume) -> None:
    problems = []
    if low.shape[1:] != full.shape[1:]:
        problems.append(f"matrix {low.shape[1]}x{low.shape[2]} vs {full.shape[1]}x{full.shape[2]}")
    if not np.allclose(low.spacing[1:], full.spacing[1:], atol=IN_PLANE_TOLERANCE_MM):
        problems.append(f"pixel spacing {low.spacing[1:]} vs {full.spacing[1:]} mm")
    if not np.allclose(low.direction[:, :2], full.direction[:, :2], atol=1e-4):
        problems.append("image orientation differs")
    normal = slice_normal(full)
    offset = low.origin - full.origin
    in_plane = offset - (offset @ normal) * normal
    if np.linalg.norm(in_plane) > IN_PLANE_TOLERANCE_MM:
        problems.append(f"in-plane origin differs by {np.linalg.norm(in_plane):.3f} mm")
    if problems:
        raise UnpairedSlicesError(
            low.source_path, f"cannot be paired with the normal-dose series {full.source_path}: " + "; ".join(problems)
        )


def _listed(values: np.ndarray, limit: int = 5) -> str:
    shown = ", ".join(f"{v:.2f}" for v in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def pair_volumes(
    low: Volume, full: Volume, *, name: str, patient: str, tolerance_mm: float = DEFAULT_POSITION_TOLERANCE_MM
) -> PairedCase:
    """Pair the slices of ``low`` and ``full`` by position along the slice normal.

    Requires the same in-plane geometry (matrix, pixel spacing, orientation, in-plane origin) and a
    one-to-one match of slice positions within ``tolerance_mm``. Otherwise raises
    :class:`UnpairedSlicesError` naming the low-dose source and listing the unmatched positions.
    """
    _check_in_plane(low, full)
    normal = slice_normal(full)
    low_pos, full_pos = slice_positions(low, normal), slice_positions(full, normal)
    nearest = np.abs(low_pos[:, None] - full_pos[None, :]).argmin(axis=1)
    matched = np.abs(low_pos - full_pos[nearest]) <= tolerance_mm
    unmatched_full = np.setdiff1d(np.arange(len(full_pos)), nearest[matched])
    if not matched.all() or len(unmatched_full) or len(set(nearest.tolist())) != len(nearest):
        parts = []
        if not matched.all():
            parts.append(f"low-dose slices at {_listed(low_pos[~matched])} mm have no normal-dose partner")
        if len(unmatched_full):
            parts.append(f"normal-dose slices at {_listed(full_pos[unmatched_full])} mm have no low-dose partner")
        if len(set(nearest.tolist())) != len(nearest):
            parts.append("several low-dose slices match one normal-dose slice")
        raise UnpairedSlicesError(
            low.source_path,
            f"slices do not pair with {full.source_path} within {tolerance_mm} mm: " + "; ".join(parts),
        )
    order = np.argsort(full_pos[nearest])
    return PairedCase(
        name=name,
        patient=patient,
        low_hu=low.hu[order],
        full_hu=full.hu[nearest[order]],
        positions_mm=full_pos[nearest[order]],
        pixel_spacing_mm=full.spacing[1:],
        low_source=str(low.source_path),
        full_source=str(full.source_path),
    )


def mayo_cases(
    root: Path | str,
    patients: tuple[str, ...] | None = MAYO_TEST_PATIENTS,
    thickness: str = "1mm",
) -> list[CaseSpec]:
    """The cases of a Mayo-2016 tree: ``root/<patient>/quarter_<thickness>`` paired with ``full_<thickness>``.

    ``patients=None`` takes every ``L<3 digits>`` folder. A missing root, patient or dose folder
    raises :class:`InputError` naming the path and what was found instead.
    """
    root = Path(root)
    if thickness not in MAYO_THICKNESSES:
        raise ConfigError("thickness", f"{thickness!r} is not one of {', '.join(MAYO_THICKNESSES)}")
    if not root.is_dir():
        raise InputError(root, "no such folder (expected a Mayo-2016 root holding patient folders L067 ... L506)")
    present = sorted(p.name for p in root.iterdir() if p.is_dir() and MAYO_PATIENT_PATTERN.match(p.name))
    wanted = tuple(present) if patients is None else patients
    if not wanted:
        raise InputError(root, "holds no Mayo-2016 patient folder (L067 ... L506)")
    cases = []
    for patient in wanted:
        folder = root / patient
        if not folder.is_dir():
            raise InputError(folder, f"patient folder missing; patients present: {', '.join(present) or 'none'}")
        low, full = folder / f"quarter_{thickness}", folder / f"full_{thickness}"
        for dose_folder in (low, full):
            if not dose_folder.is_dir():
                found = ", ".join(sorted(p.name for p in folder.iterdir() if p.is_dir())) or "none"
                raise InputError(dose_folder, f"dose folder missing; folders present in {folder.name}: {found}")
        cases.append(CaseSpec(name=patient, patient=patient, full=full, low=low))
    return cases


def pair_case(low: Path | str, full: Path | str, name: str | None = None) -> CaseSpec:
    """A generic pair: ``low`` and ``full`` each a file or folder holding exactly one series."""
    full = Path(full)
    return CaseSpec(name=name or full.name, patient=name or full.name, full=full, low=Path(low))


def simulated_cases(
    root: Path | str, dose_fraction: float, patients: tuple[str, ...] | None = None, seed: int = 0,
    kernel: str = "hann",
) -> list[CaseSpec]:
    """One case per normal-dose series under ``root``, its low dose simulated at ``dose_fraction`` with ``kernel``.

    A case's patient is its first folder level under ``root`` (the series key when the series lies
    in ``root`` itself); ``patients`` keeps only those names (InputError if one is absent).
    """
    root = Path(root)
    refs = find_series(root)
    cases = []
    for ref in refs:
        patient = ref.key.split("/")[0] if "/" in ref.key else ref.key
        cases.append(CaseSpec(name=ref.key, patient=patient, full=ref, simulated_dose=dose_fraction, seed=seed,
                              kernel=kernel))
    if patients is not None:
        missing = sorted(set(patients) - {c.patient for c in cases})
        if missing:
            present = ", ".join(sorted({c.patient for c in cases}))
            raise InputError(root, f"no series for {', '.join(missing)}; present: {present}")
        cases = [c for c in cases if c.patient in patients]
    return cases
