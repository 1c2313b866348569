"""The ONNX Runtime backend writes nothing outside the output: no telemetry device id or event database under
the user's ``~/.cache/Microsoft`` (ONNX Runtime writes them when it is imported, unless told not to)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from ctdenoise.runtime.backends.onnx_runtime import onnxruntime_installed

RUN = """
import torch
from ctdenoise.runtime.backends.onnx_runtime import OnnxRuntimeForward
forward = OnnxRuntimeForward(torch.nn.Conv2d(1, 1, 3, padding=1).eval(), threads=1)
print(tuple(forward(torch.zeros(1, 1, 8, 8)).shape))
"""


@pytest.mark.skipif(not onnxruntime_installed(), reason="needs onnxruntime and onnx (pip install 'ctdenoise[onnx]')")
def test_the_onnxruntime_backend_leaves_the_home_folder_untouched(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("XDG_CACHE_HOME", "ORT_DISABLE_TELEMETRY")}
    result = subprocess.run([sys.executable, "-c", RUN], env={**env, "HOME": str(home)}, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0 and "(1, 1, 8, 8)" in result.stdout, result.stderr
    assert [str(p.relative_to(home)) for p in home.rglob("*")] == []
