"""pydicom's per-file warnings, collected per reading thread and summarised per series without patient data.

pydicom warns once per odd value of every file it reads ("Invalid value for VR UI: '<value>'. Please
see <url> ..."), interleaved with the progress bar and quoting values that may be patient data.
Inside :func:`collect_warnings` a thread's warnings are recorded instead of shown (while
:func:`route_warnings` is active in the process); :func:`clean_message` removes quoted values, URLs
and pydicom's "use force=True" advice (a user of ctdenoise cannot pass it), and
:func:`summarise` folds (file, message) pairs into one line per series that names the files.
"""

from __future__ import annotations

import logging
import re
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

_local = threading.local()

#: Modules whose warnings are collected (repeats included) while :func:`route_warnings` is active.
ROUTED_MODULES = r"(pydicom|ctdenoise)(\..*)?$"

_QUOTED = re.compile(r"'[^']*'|\"[^\"]*\"")
_URL_ADVICE = re.compile(r"\s*Please see <[^>]*>[^.]*\.?")
_FORCE_ADVICE = re.compile(r"[^.()]*force\s*=\s*True[^.()]*\.?", re.IGNORECASE)


def without_force_advice(text: str) -> str:
    """``text`` without pydicom's "Use force=True to force reading." sentence (nor an emptied bracket)."""
    text = re.sub(r"\(\s*\)", "", _FORCE_ADVICE.sub("", str(text)))
    return re.sub(r"\s+", " ", text).strip()


def clean_message(text: str) -> str:
    """A pydicom warning without quoted values (they may be patient data: '...' instead), URL advice
    or "force=True" advice, and without its final full stop."""
    text = without_force_advice(_URL_ADVICE.sub("", _QUOTED.sub("'...'", str(text))))
    return text.rstrip(".").strip() or "warning"


@contextmanager
def collect_warnings() -> Iterator[list[str]]:
    """Record (cleaned) the warnings this thread raises inside the block into the yielded list.

    Effective while :func:`route_warnings` is active; warnings of other threads are not affected.
    """
    previous = getattr(_local, "sink", None)
    sink: list[str] = []
    _local.sink = sink
    try:
        yield sink
    finally:
        _local.sink = previous


def _not_collecting(record: logging.LogRecord) -> bool:
    """Logging filter: drop a record logged by a thread inside :func:`collect_warnings` (pydicom logs each
    warning it raises to its logger too: the warning is collected, the copy is not shown)."""
    return getattr(_local, "sink", None) is None


@contextmanager
def route_warnings() -> Iterator[None]:
    """While active (enter it in the main thread), warnings raised inside a thread's :func:`collect_warnings`
    block go to that block's list, every repeat included, and pydicom's log copies of them are dropped;
    all other warnings and log records are shown as before."""
    pydicom_log = logging.getLogger("pydicom")
    pydicom_log.addFilter(_not_collecting)
    with warnings.catch_warnings():
        warnings.filterwarnings("always", module=ROUTED_MODULES)
        shown = warnings.showwarning

        def show(message, category, filename, lineno, file=None, line=None) -> None:
            sink = getattr(_local, "sink", None)
            if sink is None:
                shown(message, category, filename, lineno, file, line)
            else:
                sink.append(clean_message(str(message)))

        warnings.showwarning = show
        try:
            yield
        finally:
            pydicom_log.removeFilter(_not_collecting)


def summarise(entries: Sequence[tuple[Path, str]], max_files: int = 3) -> list[str]:
    """One text per distinct message: the message, how many files raised it and the first file names."""
    files_by_message: dict[str, list[str]] = {}
    for path, message in entries:
        names = files_by_message.setdefault(message, [])
        if path.name not in names:
            names.append(path.name)
    lines = []
    for message, names in files_by_message.items():
        listed = ", ".join(names[:max_files]) + (f" and {len(names) - max_files} more" if len(names) > max_files else "")
        lines.append(f"{message} ({len(names)} file{'s' if len(names) != 1 else ''}: {listed})")
    return lines
