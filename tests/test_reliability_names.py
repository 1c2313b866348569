"""Output names and paths: nothing an input tree or its DICOM values say can make ctdenoise write outside OUTDIR.

Output folder names come from the input tree's folder and file names and from SeriesNumber
(never from SeriesDescription or patient attributes); every component goes through
:func:`ctdenoise.io.discover.safe_name`. Symlinks: symlinked *files* inside the input tree are
read as inputs (archives deduplicate with links); symlinked *folders* are not followed, so a link
loop cannot hang discovery. A series folder that would resolve outside OUTDIR is refused.
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import pydicom
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctdenoise.cli import main
from ctdenoise.io import find_series
from ctdenoise.io.discover import MAX_NAME_CHARS, safe_name
from ctdenoise.jobs.batch import run_batch
from ctdenoise.jobs.plan import plan_jobs

CT_SMALL = "CT_small.dcm"
SAFE_COMPONENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")

HOSTILE_NAMES = [
    "..", ".", "...", "../../etc", "/etc/passwd", "a/../../b", "C:\\Windows\\System32", "\\\\server\\share",
    "-rf", "--output=/tmp", ".hidden", "~root", "$(reboot)", "`id`", "name;rm -rf /", "a\nb", "tab\there",
    "nul\x00byte", "bell\x07", "esc\x1b[31mred", "del\x7f", "\u202eevil.exe", "患者名", "Ünïcödé", "emoji😀",
    " leading space", "trailing space ", "CON", "x" * 300, "." * 300, "a" * 96, "b" * 97, "",
]

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def assert_safe_component(name: str) -> None:
    assert SAFE_COMPONENT.match(name), name
    assert len(name) <= MAX_NAME_CHARS and name not in (".", "..")


@pytest.mark.parametrize("name", HOSTILE_NAMES, ids=range(len(HOSTILE_NAMES)))
def test_hostile_names_become_one_safe_component(name):
    assert_safe_component(safe_name(name))


@settings(max_examples=300, deadline=None, derandomize=True, database=None)
@given(st.text(min_size=0, max_size=400))
def test_any_text_becomes_one_bounded_safe_component(text):
    assert_safe_component(safe_name(text))


def test_long_names_that_differ_stay_different():
    assert safe_name("x" * 200 + "1") != safe_name("x" * 200 + "2")


def set_raw(ds: pydicom.Dataset, tag: int, vr: str, value: str) -> None:
    ds.add_new(tag, vr, value)


@pytest.fixture
def hostile_tree(build_series, tmp_path) -> Path:
    """One-slice series in hostile folders, with hostile SeriesDescription, PatientName and SeriesNumber values."""
    folders = ["weird../  ..", "a\nb/$(reboot)", "x" * 200, "患者/\x1b[31m", "-rf"]
    values = ["../../../../tmp/evil", "/etc/passwd", "..\\..\\windows", "a" * 64, "\x00\x01../"]
    for k, (folder, value) in enumerate(zip(folders, values)):
        series = build_series([0.0], name=f"archive/{folder}", source=CT_SMALL)
        for path in series.iterdir():
            ds = pydicom.dcmread(path)
            ds.SeriesDescription = value
            ds.PatientName = value
            set_raw(ds, 0x00200011, "LO", value if k % 2 else "../" + value)  # SeriesNumber as hostile text
            ds.save_as(path)
            path.rename(path.with_name(f"{k}..\x07 ;{value.replace('/', '_').replace(chr(0), '')}.dcm"))
    return tmp_path / "archive"


def test_hostile_folder_names_and_tag_values_give_safe_keys(hostile_tree):
    refs = find_series(hostile_tree)
    assert len(refs) == 5
    for ref in refs:
        for component in ref.key.split("/"):
            assert_safe_component(component)


def test_denoise_of_a_hostile_tree_writes_only_inside_outdir(hostile_tree, tiny_checkpoint, tmp_path):
    out = tmp_path / "deep" / "out"
    before = set(tmp_path.rglob("*"))
    assert main(["denoise", str(hostile_tree), "-o", str(out), "--model", str(tiny_checkpoint), "--device", "cpu"]) == 0
    created = set(tmp_path.rglob("*")) - before
    assert created and all(out in p.parents or p == out or p == out.parent for p in created)
    for path in out.rglob("*"):
        for component in path.relative_to(out).parts:
            assert component in ("report.json", ".ctdenoise.lock", ".ctdenoise-manifest") or SAFE_COMPONENT.match(
                component), component
    assert not Path("/tmp/evil").exists() and not Path("/series1").exists()


@pytest.mark.parametrize("odd_input", [".", ".."])
def test_several_inputs_named_dot_dotdot_or_root_get_safe_prefixes(odd_input, build_series, tmp_path, monkeypatch):
    work = tmp_path / "work" / "here"
    build_series([0.0], name="work/here/ct", source=CT_SMALL)
    other = build_series([0.0], name="other", source=CT_SMALL)
    monkeypatch.chdir(work)
    jobs, failures, _ = plan_jobs([Path(odd_input), other])
    assert not failures and jobs
    for job in jobs:
        assert not job.key.startswith("/")
        for component in job.key.split("/"):
            assert_safe_component(component)


def test_a_symlink_loop_does_not_hang_discovery_and_linked_folders_are_not_followed(build_series, tmp_path):
    series = build_series([0.0, 2.5], name="tree/ct", source=CT_SMALL)
    outside = build_series([0.0], name="outside/ct", source=CT_SMALL)
    (series / "loop").symlink_to(series.parent, target_is_directory=True)
    (series.parent / "linked_folder").symlink_to(outside, target_is_directory=True)
    started = time.perf_counter()
    refs = find_series(series.parent)
    assert time.perf_counter() - started < 10
    assert [len(ref.paths) for ref in refs] == [2]


def test_symlinked_files_inside_the_tree_are_read_as_inputs(build_series, tmp_path):
    series = build_series([0.0, 2.5], name="tree/ct", source=CT_SMALL)
    elsewhere = tmp_path / "store"
    elsewhere.mkdir()
    target = sorted(series.iterdir())[1]
    target.rename(elsewhere / target.name)
    target.symlink_to(elsewhere / target.name)
    (ref,) = find_series(series.parent)
    assert len(ref.paths) == 2


def test_a_symlink_planted_in_outdir_cannot_redirect_a_series_outside(build_series, tiny_checkpoint, tmp_path):
    series = build_series([0.0], name="in/ct", source=CT_SMALL)
    (ref,) = find_series(series.parent)
    out, victim = tmp_path / "out", tmp_path / "victim"
    victim.mkdir()
    first, _, rest = ref.key.partition("/")
    out.mkdir()
    (out / first).symlink_to(victim, target_is_directory=True)
    report = run_batch([series.parent], out, lambda: (None, "never used: the folder is refused first"))
    (result,) = report.series
    assert result.status == "failed" and "outside the output folder" in result.error
    assert list(victim.iterdir()) == []
