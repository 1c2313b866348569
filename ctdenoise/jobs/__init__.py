"""Orchestration of denoising runs, where the unit of work is one series.

The modules read in the order of the flow, each importing only those before it:

* :mod:`~ctdenoise.jobs.plan`: every series under the inputs becomes a job with a unique output key;
* :mod:`~ctdenoise.jobs.resume` (with :mod:`~ctdenoise.jobs.manifest`): what an earlier run left, skip or redo;
* :mod:`~ctdenoise.jobs.series`: denoise one series: read, denoise while writing
  (:mod:`~ctdenoise.jobs.overlap`), publish atomically, with derived UIDs computed from the source and
  the derivation (:mod:`ctdenoise.io.uids`); shared by every kind of run;
* :mod:`~ctdenoise.jobs.options`: what a run is asked to do (format, compression, resume rules, callbacks),
  one object shared by the runner and the runs;
* :mod:`~ctdenoise.jobs.runner`: a list of jobs into one output folder (:mod:`~ctdenoise.jobs.outdir`),
  series read ahead (:mod:`~ctdenoise.jobs.prefetch`), the report rewritten after each
  (:mod:`~ctdenoise.jobs.report`), a clean stop on signals (:mod:`~ctdenoise.jobs.interrupt`);
* the runs, peers of each other: :mod:`~ctdenoise.jobs.batch` (a folder batch, ``ctdenoise denoise``),
  :mod:`~ctdenoise.jobs.sharding` (one ``torchrun`` rank's share of it), and the DICOM node
  (:mod:`ctdenoise.serve`, which derives each received series with :mod:`~ctdenoise.jobs.series`).

Layering: jobs use io, intensity, model, registry and inference; they never import the node
(``ctdenoise.serve``) or the command line (``ctdenoise.cli``).
"""
