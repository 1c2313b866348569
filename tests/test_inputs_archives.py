"""Inputs as people have them: .zip archives (zip-slip and zip-bomb safe), DICOMDIR media, and usage errors
for a missing input or one without any CT.

The DICOMDIR is pydicom's own test tree (``dicomdirtests``: CR, CT and MR series of three patients,
read in place, never modified); the other series are built from pydicom's real CT_small slice.
"""

from __future__ import annotations

import json
import stat
import tempfile
import zipfile
from pathlib import Path

import pytest

from conftest import PYDICOM_TEST_FILES
from ctdenoise.cli import EXIT_OK, EXIT_PARTIAL, EXIT_USAGE, main
from ctdenoise.errors import InputError
from ctdenoise.io.archive import check_zip

CT_SMALL = "CT_small.dcm"
DICOMDIR = PYDICOM_TEST_FILES / "dicomdirtests" / "DICOMDIR"

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def denoise(*args: str | Path) -> int:
    return main(["denoise", *map(str, args), "--device", "cpu"])


def report_of(out: Path) -> dict:
    return json.loads((out / "report.json").read_text())


@pytest.fixture
def temp_root(tmp_path, monkeypatch) -> Path:
    """A private system temporary folder, to see what extraction leaves there."""
    root = tmp_path / "system-tmp"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def zip_folder(folder: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                handle.write(path, path.relative_to(folder).as_posix())
    return archive


def test_a_zip_archive_is_denoised_like_the_folder_it_holds(build_series, tiny_checkpoint, tmp_path, temp_root):
    build_series([0.0, 2.5, 5.0], name="tree/p1/ct", source=CT_SMALL)
    build_series([0.0, 2.5], name="tree/p2/ct", source=CT_SMALL)
    archive = zip_folder(tmp_path / "tree", tmp_path / "study.zip")

    assert denoise(tmp_path / "tree", "-o", tmp_path / "from_folder", "--model", tiny_checkpoint) == EXIT_OK
    assert denoise(archive, "-o", tmp_path / "from_zip", "--model", tiny_checkpoint) == EXIT_OK

    folder_run, zip_run = report_of(tmp_path / "from_folder"), report_of(tmp_path / "from_zip")
    assert [(s["key"], s["slices"]) for s in zip_run["series"]] == [(s["key"], s["slices"]) for s in folder_run["series"]]
    assert sorted(s["input"] for s in zip_run["series"]) == [f"{archive}!/p1/ct", f"{archive}!/p2/ct"]
    assert list(temp_root.iterdir()) == []  # the extraction folder is gone
    # a re-run of the archive (extracted again elsewhere) resumes: same instances, nothing redone
    assert denoise(archive, "-o", tmp_path / "from_zip", "--model", tiny_checkpoint) == EXIT_OK
    assert {s["status"] for s in report_of(tmp_path / "from_zip")["series"]} == {"skipped"}


@pytest.mark.parametrize("member", ["../escaped.dcm", "ct/../../escaped.dcm", "/abs/escaped.dcm"])
def test_a_zip_slip_member_refuses_the_archive_and_nothing_is_written(member, ct_small, tmp_path, temp_root, capsys):
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(ct_small, "ct/slice000.dcm")
        handle.writestr(zipfile.ZipInfo(member), ct_small.read_bytes())
    before = set(tmp_path.rglob("*"))

    assert denoise(archive, "-o", tmp_path / "out") == EXIT_USAGE

    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "outside the extraction folder" in err and str(archive) in err
    assert set(tmp_path.rglob("*")) == before  # no output, no extracted member, no escaped file anywhere
    assert list(temp_root.iterdir()) == []


def test_a_symlink_member_refuses_the_archive(ct_small, tmp_path, temp_root, capsys):
    archive = tmp_path / "link.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        link = zipfile.ZipInfo("ct/passwd")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        handle.writestr(link, "/etc/passwd")
    assert denoise(archive, "-o", tmp_path / "out") == EXIT_USAGE
    assert "symbolic link" in capsys.readouterr().err
    assert list(temp_root.iterdir()) == [] and not (tmp_path / "out").exists()


def test_a_zip_bomb_is_refused_before_anything_is_extracted(tmp_path, temp_root, capsys):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as handle:
        handle.writestr("ct/slice000.dcm", bytes(64 * 1024**2))  # 64 MiB of zeros deflate to ~64 kB
    assert denoise(archive, "-o", tmp_path / "out") == EXIT_USAGE
    err = capsys.readouterr().err
    assert "zip bomb" in err and "ct/slice000.dcm" in err
    assert list(temp_root.iterdir()) == [] and not (tmp_path / "out").exists()


def test_declared_sizes_over_the_limit_or_the_free_space_are_refused(ct_small, tmp_path):
    archive = tmp_path / "big.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(ct_small, "a.dcm")
        handle.write(ct_small, "b.dcm")
    size = 2 * ct_small.stat().st_size
    with zipfile.ZipFile(archive) as handle:
        assert [path.name for _, path in check_zip(archive, handle, free_bytes=size)] == ["a.dcm", "b.dcm"]
        with pytest.raises(InputError, match="more than the limit"):
            check_zip(archive, handle, free_bytes=size, max_total_bytes=size - 1)
        with pytest.raises(InputError, match="TMPDIR"):
            check_zip(archive, handle, free_bytes=size - 1)
        with pytest.raises(InputError, match="members"):
            check_zip(archive, handle, free_bytes=size, max_members=1)


def test_a_dicomdir_reached_through_a_symlinked_folder_keeps_its_folder_keys(tmp_path):
    from ctdenoise.io import find_series

    link = tmp_path / "media"
    link.symlink_to(DICOMDIR.parent, target_is_directory=True)
    keys = {ref.key.rsplit("/", 1)[0] for ref in find_series(link / "DICOMDIR")}
    assert "98892001/CT5N" in keys


def test_a_dicomdir_input_follows_its_records_to_the_ct_series(tiny_checkpoint, tmp_path):
    out = tmp_path / "out"
    code = denoise(DICOMDIR, "-o", out, "--model", tiny_checkpoint)

    report = report_of(out)
    series = {s["key"].rsplit("/", 1)[0]: s for s in report["series"]}
    # the three CT series its records reference; the CR and MR images are not CT (listed as skipped files);
    # TINY_ALPHA, a second media tree next to it that the records do not reference, is not read at all
    assert sorted(series) == ["77654033/CT2", "98892001/CT2N", "98892001/CT5N"]
    assert series["98892001/CT5N"]["status"] == "done" and series["98892001/CT5N"]["slices"] == 5
    # the other two are genuinely irregular (a 202 mm gap; two orientations in one series)
    assert code == EXIT_PARTIAL and {series[k]["status"] for k in ("77654033/CT2", "98892001/CT2N")} == {"failed"}
    assert any("Modality MR" in p for p in report["discovery_problems"])
    assert not any("TINY_ALPHA" in p for p in report["discovery_problems"])


def test_a_missing_input_is_a_one_line_usage_error(build_series, tmp_path, capsys):
    good = build_series([0.0, 2.5], name="good", source=CT_SMALL)
    assert denoise(good, tmp_path / "typo", "-o", tmp_path / "out") == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err == f"ctdenoise denoise: error: {tmp_path / 'typo'}: no such file or folder"
    assert not (tmp_path / "out").exists()


def test_an_input_without_any_ct_is_a_one_line_usage_error(tmp_path, capsys):
    folder = tmp_path / "no_ct"
    folder.mkdir()
    (folder / "notes.txt").write_text("not an image")
    (folder / "xray.dcm").write_bytes((PYDICOM_TEST_FILES / "dicomdirtests" / "77654033" / "CR1" / "6154").read_bytes())

    assert denoise(folder, "-o", tmp_path / "out", "--dry-run") == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "no CT series found" in err and "not a CT image (Modality CR)" in err
    assert "force" not in err.lower()  # pydicom's "use force=True" advice is no use to a ctdenoise user


def test_a_dicomdir_record_pointing_outside_its_folder_is_not_followed(tmp_path):
    import pydicom

    from ctdenoise.io.dicomdir import dicomdir_files

    media = tmp_path / "media"
    media.mkdir()
    ds = pydicom.dcmread(DICOMDIR)
    images = [r for r in ds.DirectoryRecordSequence if r.DirectoryRecordType == "IMAGE"]
    images[0].ReferencedFileID = ["..", "secret.dcm"]
    images[1].ReferencedFileID = ["IMAGES", "MISSING"]
    ds.save_as(media / "DICOMDIR")
    (tmp_path / "secret.dcm").write_bytes(b"outside the media")

    files, problems = dicomdir_files(media / "DICOMDIR")

    assert tmp_path / "secret.dcm" not in files and all(media.resolve() in f.parents for f in files)
    reasons = [why for _, why in problems]
    assert any("'../secret.dcm', outside the DICOMDIR's folder" in why for why in reasons)
    assert (media.resolve() / "IMAGES" / "MISSING", "referenced by the DICOMDIR but missing") in problems
