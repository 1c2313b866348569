"""Shared pytest fixtures: real CT test files from pydicom and pydicom-data, and series built from them.

Real files are listed from the two local stores directly: ``pydicom.data.get_testdata_files``
would try to download pydicom-data's online files, and tests must not touch the network.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pydicom
import pytest
from pydicom.data import get_testdata_file

from ctdenoise.examples import build_series_from_slice

PYDICOM_TEST_FILES = Path(pydicom.data.__file__).parent / "test_files"


def pydicom_data_dir() -> Path | None:
    """Folder of the installed pydicom-data package, or None when it is not installed."""
    try:
        from data_store import DataStore
    except ImportError:
        return None
    return Path(DataStore().data_path)


def real_dicom_files() -> list[Path]:
    """Every file of pydicom's bundled test files and of pydicom-data (not only DICOM ones)."""
    roots = [PYDICOM_TEST_FILES] + [d for d in [pydicom_data_dir()] if d is not None]
    return sorted(p for root in roots for p in root.rglob("*") if p.is_file())


def is_ct_file(path: Path) -> bool:
    """True for DICOM files whose Modality is CT or whose SOP class is a CT storage class."""
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except Exception:  # noqa: BLE001 - anything pydicom cannot read is not a CT file
        return False
    sop = ds.get("SOPClassUID")
    return ds.get("Modality") == "CT" or (sop is not None and "CT Image Storage" in sop.name)


def real_ct_files() -> list[Path]:
    """Every CT file among pydicom's test files and pydicom-data."""
    return [p for p in real_dicom_files() if is_ct_file(p)]


def real_test_file(name: str) -> Path:
    """A pydicom or pydicom-data test file by name, never downloaded (skip if pydicom-data is missing)."""
    path = get_testdata_file(name, download=False)
    if path is None:
        pytest.skip(f"{name} needs the pydicom-data package")
    return Path(path)


@pytest.fixture
def ct_small() -> Path:
    """pydicom's CT_small.dcm: one 128x128 signed 16-bit CT slice, Explicit VR Little Endian."""
    return real_test_file("CT_small.dcm")


@pytest.fixture
def build_series(tmp_path: Path) -> Callable[..., Path]:
    """Factory building a multi-slice CT series folder from one real CT slice (by default 693_UNCR.dcm, 512x512).

    ``build_series(positions_mm, instance_numbers=None, name="series", source="693_UNCR.dcm")`` copies the slice once
    per position, moves ImagePositionPatient along the slice normal, gives each copy a new
    SOPInstanceUID, a shared new SeriesInstanceUID, and adds ``10 * k`` to the stored values of
    copy ``k`` (padding voxels excepted) so slices are distinguishable. Files are named in the order given.
    """
    def build(positions_mm, instance_numbers=None, name: str = "series", source: str = "693_UNCR.dcm") -> Path:
        return build_series_from_slice(real_test_file(source), tmp_path / name, positions_mm, instance_numbers)

    return build


@pytest.fixture(scope="session")
def tiny_model():
    """A randomly initialised RN50 CLIPDenoiser (seed 0) in eval mode: the real architecture, untrained."""
    import torch

    from ctdenoise.model import CLIPDenoiser, ModelConfig

    torch.manual_seed(0)
    return CLIPDenoiser(ModelConfig()).eval()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    """``tiny_model`` saved as a checkpoint folder (config.json + model.safetensors, encoder included)."""
    from ctdenoise.model import save_checkpoint

    directory = tmp_path_factory.mktemp("tiny_checkpoint")
    save_checkpoint(tiny_model, directory)
    return directory
