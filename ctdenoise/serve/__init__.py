"""The DICOM node (``ctdenoise serve``): a Storage SCP receiving into a durable spool, quiet-period series
completion, denoising with the function every ``ctdenoise denoise`` run uses
(:func:`ctdenoise.jobs.series.denoise_series`), and delivery (folder, C-STORE, STOW-RS) with retries.
Modules: :mod:`~ctdenoise.serve.spool` (layout and state), :mod:`~ctdenoise.serve.scp` (receive),
:mod:`~ctdenoise.serve.guard` (limits on associations: per peer, idle, instance size while it arrives),
:mod:`~ctdenoise.serve.completion` (quiet period), :mod:`~ctdenoise.serve.derive` (denoise with stable UIDs),
:mod:`~ctdenoise.serve.senders` (destinations), :mod:`~ctdenoise.serve.node` (wiring)."""
