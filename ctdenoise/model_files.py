"""A model folder's files, checked before anything reads them: regular files of bounded size, bounded JSON.

A model folder comes from whoever wrote it (``--model PATH``). Before a byte of it is parsed or hashed, each
file must be a regular file (not a FIFO, a device such as ``/dev/zero`` or a folder, also not through a
link) no larger than its limit, and ``config.json`` must be JSON of bounded size and nesting. This module
imports only the standard library, so the command line can check a model before it imports torch.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path
from typing import Any

from ctdenoise.errors import CheckpointError

TENSORS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
FORMAT_NAME = "ctdenoise-checkpoint"
FORMAT_VERSION = 1
REDCNN_FORMAT_NAME = "ctdenoise-redcnn"
"""The format of the RED-CNN checkpoints written before RED-CNN shared :data:`FORMAT_NAME` (read as that)."""
DEFAULT_ARCHITECTURE = "clipdenoiser"
"""The architecture of a checkpoint whose config names none (the format held no other at first)."""
_PICKLE_SUFFIXES = {".pt", ".pth", ".bin", ".pkl", ".pickle", ".ckpt", ".tar"}

MAX_CONFIG_BYTES = 1024 * 1024
"""Largest ``config.json`` read (the shipped model's is under 2 kB)."""

MAX_TENSORS_BYTES = 16 * 1024**3
"""Largest ``model.safetensors`` hashed and loaded (the largest supported architecture, RN50x64, is 2.4 GB in fp32)."""

MAX_JSON_DEPTH = 32
"""Deepest nesting of arrays and objects accepted in ``config.json`` (the format nests 3 deep)."""


def checked_regular_file(path: Path, max_bytes: int) -> int:
    """The size of ``path`` once it is known to be a regular file (links followed) of at most ``max_bytes``;
    CheckpointError naming the file otherwise (FileNotFoundError when it does not exist)."""
    info = os.stat(path)
    if not stat.S_ISREG(info.st_mode):
        kind = "a folder" if stat.S_ISDIR(info.st_mode) else "a device, FIFO or socket"
        raise CheckpointError(f"{path}: not a regular file ({kind}); a model folder holds regular files only")
    if info.st_size > max_bytes:
        raise CheckpointError(f"{path}: {info.st_size} bytes, over the limit of {max_bytes} bytes for this file")
    return info.st_size


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in the JSON ``text`` (brackets inside strings not counted)."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def read_small_json(path: Path, max_bytes: int = MAX_CONFIG_BYTES) -> Any:
    """Parse the JSON file ``path`` after :func:`checked_regular_file` and a nesting check (at most
    :data:`MAX_JSON_DEPTH`); CheckpointError naming the file and the problem (FileNotFoundError when missing)."""
    checked_regular_file(path, max_bytes)
    with open(path, "rb") as handle:
        data = handle.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew since stat
        raise CheckpointError(f"{path}: over the limit of {max_bytes} bytes for this file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CheckpointError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if json_depth(text) > MAX_JSON_DEPTH:
        raise CheckpointError(f"{path}: JSON nested deeper than {MAX_JSON_DEPTH} levels; not a model config")
    try:
        return json.loads(text)
    except (json.JSONDecodeError, RecursionError) as exc:
        raise CheckpointError(f"{path}: not valid JSON: {exc}") from None


def checkpoint_directory(path: Path) -> Path:
    """The checkpoint folder for ``path`` (a folder, or its ``model.safetensors``); pickle-based files are
    refused before anything reads them (CheckpointError)."""
    if path.is_dir():
        return path
    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint not found")
    if path.name == TENSORS_FILE:
        return path.parent
    if path.suffix.lower() in _PICKLE_SUFFIXES or _looks_pickled(path):
        raise CheckpointError(
            f"{path}: pickle-based checkpoints (.pt/.pth/.bin/.pkl) are refused because loading them can run "
            f"arbitrary code; a ctdenoise checkpoint is a folder holding {TENSORS_FILE} and {CONFIG_FILE}"
        )
    raise CheckpointError(f"{path}: not a ctdenoise checkpoint folder (expected {TENSORS_FILE} and {CONFIG_FILE})")


def _looks_pickled(path: Path) -> bool:
    """True for a pickle stream (protocol 2+ starts with 0x80) or a torch.save zip archive."""
    with path.open("rb") as handle:
        head = handle.read(4)
    return head[:1] == b"\x80" or head == b"PK\x03\x04"


def architecture_name(config: dict[str, Any]) -> str:
    """The lower-case architecture name of a checkpoint config read by :func:`read_checkpoint_config_file`
    (:data:`DEFAULT_ARCHITECTURE` when it names none)."""
    return str(config["architecture"].get("name", DEFAULT_ARCHITECTURE)).lower()


def read_checkpoint_config_file(config_path: Path) -> dict[str, Any]:
    """The checkpoint config ``config_path`` (:func:`read_small_json`), checked to be a ctdenoise checkpoint's
    of the supported format version with its architecture and tensors sections (and, for a CLIPDenoiser,
    its encoder section); CheckpointError naming the file otherwise. A RED-CNN checkpoint of the earlier
    :data:`REDCNN_FORMAT_NAME` (the same sections, without a version) reads as this format."""
    try:
        config = read_small_json(config_path)
    except FileNotFoundError as exc:
        raise CheckpointError(f"{config_path}: missing; a ctdenoise checkpoint needs {CONFIG_FILE}") from exc
    except OSError as exc:
        raise CheckpointError(f"{config_path}: unreadable checkpoint config: {exc.strerror or exc}") from exc
    if isinstance(config, dict) and config.get("format") == REDCNN_FORMAT_NAME:
        config = {**config, "format": FORMAT_NAME, "format_version": FORMAT_VERSION}
    if not isinstance(config, dict) or config.get("format") != FORMAT_NAME:
        raise CheckpointError(f"{config_path}: not a {FORMAT_NAME} config")
    if config.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{config_path}: checkpoint format version {config.get('format_version')} is not supported "
            f"(this ctdenoise reads version {FORMAT_VERSION})"
        )
    for section in ("architecture", "tensors"):
        if not isinstance(config.get(section), dict):
            raise CheckpointError(f"{config_path}: section '{section}' missing or malformed")
    if architecture_name(config) == DEFAULT_ARCHITECTURE and not isinstance(config.get("encoder"), dict):
        raise CheckpointError(f"{config_path}: section 'encoder' missing or malformed")
    return config


def check_checkpoint_files(path: Path) -> Path:
    """The checkpoint folder of ``path`` once its files pass the checks that need no torch: not a pickle, a
    valid config (:func:`read_checkpoint_config_file`) and a tensor file that is a regular file of at most
    :data:`MAX_TENSORS_BYTES`. Loading still verifies the tensors' hash and shapes."""
    directory = checkpoint_directory(Path(path))
    read_checkpoint_config_file(directory / CONFIG_FILE)
    try:
        checked_regular_file(directory / TENSORS_FILE, MAX_TENSORS_BYTES)
    except OSError:
        raise CheckpointError(f"{directory / TENSORS_FILE}: tensor file missing") from None
    return directory
