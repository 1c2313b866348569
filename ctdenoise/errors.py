"""One exception hierarchy for everything ctdenoise reports to a user.

Every error raised on purpose by ctdenoise derives from :class:`CTDenoiseError`. Errors about a
file carry the path in ``.path`` and put it first in the message, so a batch report can say
*which* input failed and *why* without a traceback from inside pydicom, nibabel or torch.
"""

from __future__ import annotations

from pathlib import Path


class CTDenoiseError(Exception):
    """Base class of all errors ctdenoise raises deliberately."""


class InputError(CTDenoiseError):
    """An input file or folder cannot be used. ``path`` names it; the message says why."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


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
    """An output cannot be written (refused path, read-only or full disk, existing output)."""

    def __init__(self, path: str | Path | None, problem: str) -> None:
        self.path = Path(path) if path is not None else None
        self.problem = problem
        super().__init__(f"{self.path}: {problem}" if self.path is not None else problem)


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
