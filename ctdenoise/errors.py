"""One exception hierarchy for everything ctdenoise reports to a user.

Every error raised on purpose by ctdenoise derives from :class:`CTDenoiseError`. Errors about a
file carry the path in ``.path`` and put it first in the message, so a batch report can say
*which* input failed and *why* without a traceback from inside pydicom, nibabel or torch.
"""

from __future__ import annotations

from pathlib import Path

MAX_QUOTED_CHARS = 80
"""Longest text of a value (or of a library's message) quoted in an error message; the rest is cut."""

MAX_PROBLEM_CHARS = 1000
"""Longest ``problem`` of an InputError or OutputError: one log line, however long the values it quotes."""


def shorten(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """``str(value)``, cut to ``limit`` characters with how many there were (a corrupt element's value can be
    megabytes long, and an error message is one log line)."""
    text = str(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}... ({len(text):,} characters)"


def quoted(value: object, limit: int = MAX_QUOTED_CHARS) -> str:
    """``repr(value)``, cut as :func:`shorten` cuts."""
    return shorten(repr(value), limit)


class CTDenoiseError(Exception):
    """Base class of all errors ctdenoise raises deliberately."""


class InputError(CTDenoiseError):
    """An input file or folder cannot be used. ``path`` names it; the message says why (at most
    :data:`MAX_PROBLEM_CHARS` characters)."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = shorten(problem, MAX_PROBLEM_CHARS)
        super().__init__(f"{self.path}: {self.problem}" if self.path is not None else self.problem)


class NotDicomError(InputError):
    """The file is not a readable DICOM file."""


class NotCTError(InputError):
    """The DICOM file is not a CT image (another Modality or SOP class)."""


class EmptyInputError(InputError):
    """A folder holds no usable image files."""


class MixedSeriesError(InputError):
    """Several series were found where exactly one was asked for."""


class SliceGeometryError(InputError):
    """Slices of one series do not form a regular volume (gaps, duplicates, orientation, spacing)."""


class PixelDataError(InputError):
    """Pixel data is missing, truncated or inconsistent with the header."""


class UnsupportedTransferSyntaxError(InputError):
    """No installed pixel-data plugin can decode the file's transfer syntax."""


class ImageTooLargeError(InputError):
    """The declared image size exceeds the configured limit (guard against decompression bombs)."""


class UnpairedSlicesError(InputError):
    """Low- and normal-dose series cannot be paired slice by slice (positions or in-plane geometry differ)."""


class OutputError(CTDenoiseError):
    """An output cannot be written (refused path, read-only or full disk, existing output); the problem is cut
    to :data:`MAX_PROBLEM_CHARS` characters."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = shorten(problem, MAX_PROBLEM_CHARS)
        super().__init__(f"{self.path}: {self.problem}" if self.path is not None else self.problem)


class ModelError(CTDenoiseError):
    """A model, its weights or its checkpoint cannot be used."""


class WeightsError(ModelError):
    """CLIP encoder weights are missing, unreachable, or do not match the architecture."""


class CheckpointError(ModelError):
    """A checkpoint file is unsafe (pickle), corrupted, tampered with, or inconsistent with its config."""


class ConfigError(CTDenoiseError):
    """A configuration file or value is invalid. ``key`` names the offending entry."""

    def __init__(self, key: str, problem: str, source: str | Path | None = None) -> None:
        self.key = key
        self.problem = problem
        where = f"{source}: " if source is not None else ""
        super().__init__(f"{where}config key '{key}': {problem}")


class OutputStorageError(OutputError):
    """The output file system refused a write (full, over quota, read-only, no permission).

    Unlike a problem with one series, this stops a batch: every further series would fail the same way.
    """
