"""Checks of a model folder's files before anything reads them: regular files of bounded size, bounded JSON.

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
