"""Specification of batch runs sharded across torchrun ranks (ctdenoise.jobs.sharding)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from ctdenoise.jobs.plan import BatchJob
from ctdenoise.jobs.report import BatchReport, SeriesResult, merge_reports
from ctdenoise.jobs.sharding import RankInfo, partial_report_name, shard_jobs

SERIES_COUNT = 5


def job(key: str) -> BatchJob:
    return BatchJob(ref=None, input_root=Path("in"), key=key)  # type: ignore[arg-type]


def test_shards_are_disjoint_cover_every_job_and_ignore_discovery_order():
    jobs = [job(k) for k in ("c", "a", "e", "b", "d")]
    shards = [shard_jobs(jobs, rank, 2) for rank in range(2)]
    assert [[j.key for j in s] for s in shards] == [["a", "c", "e"], ["b", "d"]]
    assert shard_jobs(list(reversed(jobs)), 1, 2) == shards[1]
    assert [j.key for j in shard_jobs(jobs, 2, 3)] == ["c"]


def test_rank_info_comes_from_torchrun_variables(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert RankInfo.from_env() is None
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert RankInfo.from_env() == RankInfo(rank=3, world_size=4, local_rank=1)


def test_merged_report_lists_discovery_failures_then_every_series_by_key():
    rank0 = BatchReport(model="m", output_format="same", series=[SeriesResult("c", "in/c", "done")])
    rank1 = BatchReport(model="", output_format="same", series=[SeriesResult("a", "in/a", "skipped")])
    broken = SeriesResult("bad", "in/bad", "failed", error="no series")
    merged = merge_reports([rank0, rank1], [broken], ["x: not DICOM"], "same")
    assert [s.key for s in merged.series] == ["bad", "a", "c"]
    assert merged.model == "m" and merged.discovery_problems == ["x: not DICOM"]


def write_tiny_tree(root: Path) -> list[str]:
    """SERIES_COUNT NIfTI volumes of 2 slices of 32x32 HU in two sub-folders; returns their file names."""
    rng = np.random.default_rng(0)
    names = []
    for index in range(SERIES_COUNT):
        folder = root / ("a" if index % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        hu = rng.normal(0, 100, (32, 32, 2)).astype(np.float32)
        nib.save(nib.Nifti1Image(hu, np.diag([0.7, 0.7, 2.0, 1.0])), folder / f"vol{index}.nii.gz")
        names.append(f"vol{index}")
    return names


@pytest.mark.slow  # ~20 s (two processes / a kernel start): CI runs it in its slow step
def test_two_torchrun_ranks_write_every_series_exactly_once(tmp_path, tiny_checkpoint):
    names = write_tiny_tree(tmp_path / "in")
    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "ctdenoise", "denoise", str(tmp_path / "in"), "-o", str(out),
        "--model", str(tiny_checkpoint), "--device", "cpu",
    ]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads((out / "report.json").read_text())
    keys = [s["key"] for s in report["series"]]
    assert len(keys) == SERIES_COUNT == len(set(keys))
    assert report["counts"] == {"done": SERIES_COUNT}  # a second write of one series would have failed
    assert sorted(Path(k).name.split(".")[0] for k in keys) == sorted(names)
    assert all((out / s["output"]).exists() for s in report["series"])
    assert not any((out / partial_report_name(rank)).exists() for rank in range(2))

