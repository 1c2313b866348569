"""Shared pieces of the benchmark scripts: the run record, the models compared, timing and peak memory.

Every result records the machine, library versions, the date and ``os.getloadavg()`` before and after,
because these machines are shared and timings are only comparable within one run.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from ctdenoise.cli.options import add_model_option
from ctdenoise.io.hashing import sha256_file
from ctdenoise.model import CLIPDenoiser, ModelConfig, save_checkpoint
from ctdenoise.model.config import encoder_spec
from ctdenoise.model.encoder import make_stage
from ctdenoise.registry import available_models, load_model, resolve_model_dir
from ctdenoise.runtime.precision import cpu_flags, cpu_has_native_bf16

RSS_SAMPLE_SECONDS = 0.005


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (or platform's guess)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device) -> dict[str, object]:
    """Machine, versions, threads, date and load average: what every benchmark JSON starts with."""
    flags = cpu_flags()
    info: dict[str, object] = {
        "date_utc": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "loadavg_start": [round(x, 2) for x in os.getloadavg()],
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cores_available": len(os.sched_getaffinity(0)),
        "cpu_bf16_flags": sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx512f"}),
        "cpu_native_bf16": cpu_has_native_bf16(flags),
        "torch_threads": torch.get_num_threads(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "device": str(device),
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
    return info


BENCHMARK_MODEL_HELP = "auto (the shipped default model if installed, else random weights), random, or a checkpoint folder"


def add_benchmark_model_option(parser: argparse.ArgumentParser) -> None:
    """A benchmark's ``--model`` (:func:`ctdenoise.cli.options.add_model_option`; default ``auto``), read by
    :func:`load_benchmark_model`."""
    add_model_option(parser, default="auto", help=BENCHMARK_MODEL_HELP)


def load_benchmark_model(spec: str) -> tuple[nn.Module, str]:
    """The model to measure: ``auto`` = the shipped default model if installed, else a random-weight
    RN50 CLIPDenoiser (same architecture, so the same speed); ``random``; or a checkpoint folder/name."""
    if spec == "auto":
        spec = "default" if "default" in available_models() else "random"
    if spec == "random":
        torch.manual_seed(0)
        return CLIPDenoiser(ModelConfig()).eval(), "random-weight RN50 CLIPDenoiser"
    return load_model(spec), spec


def model_fields(spec: str) -> dict[str, object]:
    """``model_sha256``: the sha256 of the weights file of the model named ``spec`` (an installed model or a
    checkpoint folder), so results say which version of e.g. the default model they measured; None for
    random weights."""
    if spec not in available_models() and not Path(spec).is_dir():
        return {"model_sha256": None}
    weights = resolve_model_dir(spec) / "model.safetensors"
    return {"model_sha256": sha256_file(weights) if weights.is_file() else None}


def cli_model_argument(spec: str, model: nn.Module, folder: Path) -> str:
    """What ``ctdenoise denoise --model`` gets for the model :func:`load_benchmark_model` returned as
    ``(model, spec)``: an installed model's name or a checkpoint folder as given, else (random weights)
    the model saved as a checkpoint under ``folder``."""
    if spec in available_models() or Path(spec).is_dir():
        return spec
    return str(save_checkpoint(model, folder))


def ctdenoise_command() -> list[str]:
    """The command a user types: the ``ctdenoise`` entry point installed next to this interpreter, else
    ``python -m ctdenoise``."""
    script = Path(sys.executable).with_name("ctdenoise")
    return [str(script)] if script.is_file() else [sys.executable, "-m", "ctdenoise"]


def run_cli_cold(arguments: list[str]) -> float:
    """Wall seconds of ``ctdenoise ARGUMENTS`` in a new process, as a user runs it (interpreter start,
    imports, model loading and preparation included); SystemExit with its output if it fails."""
    start = time.perf_counter()
    done = subprocess.run([*ctdenoise_command(), *arguments], capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"ctdenoise {' '.join(arguments)} exited with {done.returncode}:\n{done.stderr[-2000:]}")
    return seconds


class ReferenceForward(nn.Module):
    """The public CLIPDenoising code's test-time forward of the same weights: fp32 eager, NCHW, BatchNorm
    unfolded, and CLIP layer4 computed on the layer3 output and discarded (an RN50-shaped layer4 with
    random weights: its values are never used, only its cost counts)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        spec = encoder_spec(model.config.encoder_name)
        self.layer4 = make_stage(spec.width * 16, spec.width * 8, spec.layers[3], stride=2).eval()
        self.layer4.to(next(model.parameters()).device)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hook = self.model.encoder.layer3.register_forward_hook(self._run_layer4)
        try:
            return self.model(x)
        finally:
            hook.remove()

    def _run_layer4(self, _module: nn.Module, _inputs: object, layer3_output: torch.Tensor) -> None:
        self.layer4(layer3_output)  # computed and discarded, as the public code does


class PeakMemory:
    """Peak memory growth during a ``with`` block: CUDA max allocated bytes, or on the CPU the process's
    resident set size sampled every 5 ms minus its value at entry (an approximation: allocator caching
    and sampling both blur it)."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.peak_bytes = 0
        self._stop = threading.Event()

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
        else:
            self._base = rss_bytes()
            self._stop.clear()
            self._thread = threading.Thread(target=self._sample, daemon=True)
            self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak_bytes = max(self.peak_bytes, rss_bytes() - self._base)
            time.sleep(RSS_SAMPLE_SECONDS)

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device) - self._base
        else:
            self._stop.set()
            self._thread.join()


def rss_bytes() -> int:
    """Current resident set size of this process in bytes (Linux), else the peak so far."""
    try:
        return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def timed(run: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one ``run()``, synchronising a CUDA device before and after."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def median(values: list[float]) -> float:
    return statistics.median(values)


def write_json(path: Path, payload: dict[str, object]) -> None:
    """Write ``payload`` with the load average at the end added, creating the folder."""
    payload["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {path}")
