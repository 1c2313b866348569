"""``ctdenoise denoise`` gives a derived series the same UIDs every time it derives it with the same model and
settings (the node's rule, ctdenoise.io.uids), so a re-run sent to a PACS replaces the first copy
instead of showing up as a second series; its SeriesNumber reads as the source's number followed by three digits."""

from __future__ import annotations

from pathlib import Path

import pydicom

from ctdenoise.cli import main


def derived(out: Path) -> list[pydicom.Dataset]:
    return sorted((pydicom.dcmread(p) for p in out.rglob("*.dcm")), key=lambda ds: ds.InstanceNumber)


def test_rerunning_a_batch_gives_the_same_uids_and_another_strength_other_ones(build_series, tiny_checkpoint, tmp_path):
    source = build_series([0.0, 5.0], name="scanner", source="CT_small.dcm")
    number = int(pydicom.dcmread(next(source.iterdir())).SeriesNumber)

    def run(out: str, *options: str) -> list[pydicom.Dataset]:
        assert main(["-q", "denoise", str(source), "-o", str(tmp_path / out), "--model", str(tiny_checkpoint),
                     "--device", "cpu", *options]) == 0
        return derived(tmp_path / out)

    first, again, other = run("a"), run("b"), run("c", "--strength", "0.5")
    uids = [(ds.SeriesInstanceUID, ds.SOPInstanceUID) for ds in first]
    assert uids == [(ds.SeriesInstanceUID, ds.SOPInstanceUID) for ds in again]
    assert not {uid for pair in uids for uid in pair} & {uid for ds in other for uid in (ds.SeriesInstanceUID, ds.SOPInstanceUID)}
    series_numbers = {int(ds.SeriesNumber) for ds in first}, {int(ds.SeriesNumber) for ds in other}
    assert all(len(numbers) == 1 for numbers in series_numbers) and series_numbers[0] != series_numbers[1]
    assert all(n // 1000 == number and 1 <= n % 1000 <= 999 for numbers in series_numbers for n in numbers)
