"""Planning a run: every series under the inputs becomes a :class:`BatchJob` with a unique output key.

Inputs may be folders, files, .zip archives (checked and extracted into a temporary workspace; also
those found inside a folder input) and DICOMDIR files. An input that does not exist, or holds no usable series, is a usage error raised before
anything is written; files skipped while looking for series are listed as problems.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

from ctdenoise.errors import CTDenoiseError, EmptyInputError, InputError
from ctdenoise.io import SeriesRef, find_series
from ctdenoise.io.archive import extracted_zip, is_zip_input
from ctdenoise.io.discover import archives_under, safe_name
from ctdenoise.io.read_warnings import summarise, without_force_advice
from ctdenoise.jobs.report import SeriesResult

log = logging.getLogger("ctdenoise.jobs")

SHOWN_PROBLEMS = 10
"""Files skipped during discovery that a run names on the console (report.json lists all of them)."""


@dataclass(frozen=True)
class BatchJob:
    """One series to process and the folder (relative to OUTDIR) it is published as; ``archive``: the .zip
    input it was extracted from (into ``input_root``, a temporary folder), None for other inputs."""

    ref: SeriesRef
    input_root: Path
    key: str
    archive: Path | None = None


def shown_path(path: Path, input_root: Path, archive: Path | None) -> str:
    """``path`` as the user knows it: inside a .zip input as ``ARCHIVE!/member``, else as is."""
    if archive is None:
        return str(path)
    try:
        return f"{archive}!/{path.relative_to(input_root).as_posix()}"
    except ValueError:
        return str(archive)


def job_input(job: BatchJob) -> str:
    """The input of ``job`` for the report: its folder (or its single file)."""
    source = job.ref.paths[0].parent if len(job.ref.paths) > 1 else job.ref.paths[0]
    return shown_path(source, job.input_root, job.archive)


def _nested_archives(
    root: Path, workspace: ExitStack, problems: list[str]
) -> list[tuple[list[SeriesRef], Path, Path, str]]:
    """The series of each .zip archive in the folder tree ``root``: (refs, extracted folder, archive, key prefix
    (the archive's path below ``root`` without .zip)). An archive that is unsafe, damaged or holds no CT series
    is listed in ``problems`` (with its skipped files) and the others go on."""
    found = []
    for archive in archives_under(root):
        try:
            folder = workspace.enter_context(extracted_zip(archive))
            refs = find_series(folder)
        except CTDenoiseError as error:
            problems.append(without_force_advice(str(error)))
            continue
        prefix = "/".join(safe_name(part) for part in archive.relative_to(root).with_suffix("").parts)
        found.append((refs, folder, archive, prefix))
    return found


def plan_jobs(
    inputs: Sequence[Path], workspace: ExitStack | None = None
) -> tuple[list[BatchJob], list[SeriesResult], list[str]]:
    """Discover every series under ``inputs``: jobs with unique output keys, failed inputs, skipped files.

    With several inputs, each input's keys are prefixed by the input's own name (a .zip archive's without
    .zip) so the output tree mirrors the inputs side by side. A .zip input is checked and extracted into a
    temporary folder that ``workspace`` removes when it closes (:mod:`ctdenoise.io.archive`; without a
    workspace it is a failed input); so is each .zip archive inside a folder input (its series' keys start
    with the archive's path in the folder, without .zip; an unusable one is a problem, not a failed input;
    without a workspace they are listed as problems). A DICOMDIR file stands for the files its records
    reference. An input that holds no usable series is a failed entry, not a reason to stop; files skipped
    during discovery (not DICOM, not CT) are listed as problems.
    """
    jobs: list[BatchJob] = []
    failures: list[SeriesResult] = []
    problems: list[str] = []
    seen: set[str] = set()
    for root in inputs:
        root = Path(root)
        archive = root if is_zip_input(root) else None
        opens_archives = archive is None and workspace is not None and root.is_dir()
        try:
            if archive is not None:
                if workspace is None:
                    raise InputError(archive, "a .zip input needs a workspace to be extracted into")
                root = workspace.enter_context(extracted_zip(archive))
            nested = _nested_archives(root, workspace, problems) if opens_archives and workspace is not None else []
            try:
                sources = [(find_series(root, skip_archives=opens_archives), root, archive, "")]
            except EmptyInputError as error:  # a folder of archives: its other skipped files are in the message
                if not nested:
                    raise
                if not error.problem.endswith("(no files)"):
                    problems.append(without_force_advice(str(error)))
                sources = []
            sources += nested
        except CTDenoiseError as error:
            given = archive or root
            failures.append(SeriesResult(key=given.name, input=str(given), status="failed",
                                         error=without_force_advice(str(error))))
            continue
        name = archive.stem if archive is not None else root.resolve().name
        for refs, input_root, source_archive, prefix in sources:
            for ref in refs:
                key = f"{prefix}/{ref.key}" if prefix else ref.key
                key = f"{safe_name(name)}/{key}" if len(inputs) > 1 else key
                while key in seen:
                    key = f"{key}-{len(seen)}"
                seen.add(key)
                jobs.append(BatchJob(ref=ref, input_root=input_root, key=key, archive=source_archive))
                problems.extend(f"{shown_path(path, input_root, source_archive)}: {why}" for path, why in ref.problems)
    return jobs, failures, problems


def log_discovery_problems(problems: Sequence[str]) -> None:
    """Warn, one line each, about the first :data:`SHOWN_PROBLEMS` files skipped while looking for series, and
    how many more there are (``report.json``'s ``discovery_problems`` lists them all)."""
    for problem in problems[:SHOWN_PROBLEMS]:
        log.warning("skipped while looking for series: %s", problem)
    if len(problems) > SHOWN_PROBLEMS:
        log.warning("... and %d more skipped files, listed in report.json (discovery_problems)",
                    len(problems) - SHOWN_PROBLEMS)


def check_inputs_exist(inputs: Sequence[Path]) -> None:
    """InputError (a usage error) for the first input that does not exist."""
    for root in inputs:
        if not Path(root).exists():
            raise InputError(root, "no such file or folder")


def raise_for_unusable_inputs(failures: Sequence[SeriesResult]) -> None:
    """InputError (a usage error, one line) naming every input of ``plan_jobs`` that gave no series."""
    if failures:
        raise InputError(None, "; ".join(f.error or f.input for f in failures))


def series_warnings(job: BatchJob, read_messages: Sequence[str]) -> list[str]:
    """The warnings of ``job``'s discovery (per file) and of its reading (per series; repeats dropped), summarised."""
    found = {message for _, message in job.ref.warnings}
    source = job.ref.paths[0].parent if len(job.ref.paths) > 1 else job.ref.paths[0]
    return summarise([*job.ref.warnings, *((source, m) for m in read_messages if m not in found)])
