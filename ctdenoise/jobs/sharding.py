"""A folder batch sharded across processes and machines launched by ``torchrun``: one rank's share.

Each rank discovers the same series, sorts them by output key and takes every ``world_size``-th one
starting at its rank (:func:`shard_jobs`), so the shares are deterministic, disjoint and cover every
series. Rank 0 holds the OUTDIR lock for the whole run and clears stale staging before any rank starts;
every rank writes its own partial report (``.report.rank-<r>.json``, rewritten after each series);
at the end the results are gathered over ``torch.distributed`` (gloo, CPU-only coordination, so it works
the same with or without GPUs) and rank 0 writes the one merged ``report.json`` and removes the
partial reports. On CUDA each rank uses the GPU of its ``LOCAL_RANK``.

One multi-GPU node::

    torchrun --standalone --nproc_per_node 8 -m ctdenoise denoise IN -o OUT

A cluster (OUTDIR on a shared filesystem; run on every node)::

    torchrun --nnodes 4 --nproc_per_node 8 --rdzv_backend c10d --rdzv_endpoint HOST:29500 \\
        --rdzv_id JOB -m ctdenoise denoise IN -o OUT
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.distributed as dist

from ctdenoise.errors import OutputError
from ctdenoise.io.atomic import refuse_inputs
from ctdenoise.io.read_warnings import route_warnings
from ctdenoise.jobs.options import BatchOptions
from ctdenoise.jobs.outdir import output_lock, remove_stale_partials, write_text_atomic
from ctdenoise.jobs.plan import BatchJob, check_inputs_exist, plan_jobs, raise_for_unusable_inputs
from ctdenoise.jobs.report import REPORT_FILE, BatchReport, merge_reports
from ctdenoise.jobs.report_html import write_batch_report_html
from ctdenoise.jobs.runner import process_jobs
from ctdenoise.runtime.settings import InferenceSettings


@dataclass(frozen=True)
class RankInfo:
    """This process's place in a torchrun job: global ``rank``, ``world_size`` and ``local_rank`` (its GPU)."""

    rank: int
    world_size: int
    local_rank: int

    @classmethod
    def from_env(cls) -> RankInfo | None:
        """The torchrun rank from ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``, or None outside a multi-process job."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size < 2:
            return None
        return cls(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))


def shard_jobs(jobs: Sequence[BatchJob], rank: int, world_size: int) -> list[BatchJob]:
    """The jobs of ``rank``: every ``world_size``-th job of the key-sorted list, starting at ``rank``."""
    ordered = sorted(jobs, key=lambda job: job.key)
    return [job for index, job in enumerate(ordered) if index % world_size == rank]


def partial_report_name(rank: int) -> str:
    """File name of a rank's partial report inside OUTDIR."""
    return f".report.rank-{rank}.json"


def rank_settings(settings: InferenceSettings, info: RankInfo) -> InferenceSettings:
    """``settings`` with ``auto``/``cuda`` pinned to the GPU of this rank's ``LOCAL_RANK`` when CUDA exists
    (the CPU-only onnxruntime backend is left on the CPU)."""
    if settings.device in ("auto", "cuda") and settings.backend != "onnxruntime" and torch.cuda.is_available():
        return replace(settings, device=f"cuda:{info.local_rank % torch.cuda.device_count()}")
    return settings


def run_batch_distributed(
    inputs: Sequence[Path],
    out_dir: Path,
    load_model: Callable[[], tuple[torch.nn.Module, str]],
    info: RankInfo,
    options: BatchOptions = BatchOptions(),
) -> BatchReport:
    """:func:`ctdenoise.jobs.batch.run_batch` for one rank of a torchrun job; every rank returns the merged report.

    Every series is processed by exactly one rank; ``OUTDIR/report.json`` (written by rank 0 after all
    ranks finished) lists every series once, in key order, as ``run_batch`` would. An OUTDIR that rank 0
    cannot lock (another run) or that lies inside an input raises :class:`OutputError` on every rank.
    """
    out_dir = Path(out_dir)
    inputs = [Path(p) for p in inputs]
    check_inputs_exist(inputs)
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("gloo", rank=info.rank, world_size=info.world_size)
    try:
        with lock_on_rank_zero(out_dir, inputs, info), ExitStack() as workspace, route_warnings():
            with options.stop_immediately():
                jobs, failures, problems = plan_jobs(inputs, workspace)
            raise_for_unusable_inputs(failures)  # every rank found the same, so every rank raises
            mine = shard_jobs(jobs, info.rank, info.world_size)
            partial = BatchReport(model="", output_format=options.output_format)
            partial_path = out_dir / partial_report_name(info.rank)
            try:
                rank_options = replace(options, settings=rank_settings(options.settings, info))
                process_jobs(mine, out_dir, load_model, partial, partial_path, rank_options)
            finally:
                write_text_atomic(partial_path, partial.to_json())
            gathered: list[BatchReport | None] = [None] * info.world_size
            dist.all_gather_object(gathered, partial)
            report = merge_reports([r for r in gathered if r is not None], failures, problems, options.output_format)
            if info.rank == 0:
                write_text_atomic(out_dir / REPORT_FILE, report.to_json())
                write_batch_report_html(out_dir, report, jobs)
                for rank in range(info.world_size):
                    (out_dir / partial_report_name(rank)).unlink(missing_ok=True)
            dist.barrier()
        return report
    finally:
        if owns_group:
            dist.destroy_process_group()


@contextmanager
def lock_on_rank_zero(out_dir: Path, inputs: Sequence[Path], info: RankInfo) -> Iterator[None]:
    """Rank 0 checks OUTDIR, takes its lock and removes stale staging before any rank goes on.

    A refusal on rank 0 is broadcast, so every rank raises the same :class:`OutputError`. Rank 0 releases
    the lock when the block ends (the block ends with a barrier: every rank has finished writing).
    """
    with ExitStack() as stack:
        refusal: list[str | None] = [None]
        if info.rank == 0:
            try:
                refuse_inputs(out_dir, inputs, run_folder=True)
                stack.enter_context(output_lock(out_dir))
                remove_stale_partials(out_dir)
            except OutputError as error:
                refusal = [str(error)]
        dist.broadcast_object_list(refusal, src=0)
        if refusal[0] is not None:
            raise OutputError(None, refusal[0])
        yield
