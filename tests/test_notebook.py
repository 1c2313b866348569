"""notebooks/quickstart.ipynb runs from top to bottom with the shipped model."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from ctdenoise.registry import DEFAULT_MODEL_NAME, available_models

NOTEBOOK = Path(__file__).resolve().parents[1] / "notebooks" / "quickstart.ipynb"


@pytest.mark.slow  # ~20 s (two processes / a kernel start): CI runs it in its slow step
def test_quickstart_notebook_executes(tmp_path):
    if DEFAULT_MODEL_NAME not in available_models():
        pytest.fail("the package ships no default model, which the quickstart uses")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", []))
    assert "4 slices of 128x128" in outputs
    assert "DICOM files; denoised.nii.gz" in outputs
    images = [o for cell in notebook.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) == 1  # the before / after / difference figure
