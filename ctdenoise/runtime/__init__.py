"""The runtime layer: a trained network prepared once for one device, precision and engine, then run on HU.

It sits between the model (:mod:`ctdenoise.model`, :mod:`ctdenoise.registry`) and the jobs
(:mod:`ctdenoise.jobs`), and imports nothing here so that :mod:`ctdenoise.runtime.options` stays importable
without torch (``ctdenoise --help``):

* :mod:`~ctdenoise.runtime.options`: the names the settings take (devices, precisions, backends), no torch;
* :mod:`~ctdenoise.runtime.settings`: :class:`~ctdenoise.runtime.settings.InferenceSettings`, checked when made;
* :mod:`~ctdenoise.runtime.prepare`: :func:`~ctdenoise.runtime.prepare.prepare`, the one constructor of a
  :class:`~ctdenoise.runtime.prepare.PreparedModel` (the network's inference copy, its label, provenance and
  model folder), and :func:`~ctdenoise.runtime.prepare.load_prepared` (a model by name, loaded and prepared);
* :mod:`~ctdenoise.runtime.network`: the inference copy's changes to the network (BatchNorm folded, fp32 output layer);
* :mod:`~ctdenoise.runtime.precision`: autocast dtypes by device and the CPU's bf16 support;
* :mod:`~ctdenoise.runtime.backends`: one module per engine (eager, compile, CUDA graphs, ONNX Runtime), each
  saying whether it can run here and what it needs;
* :mod:`~ctdenoise.runtime.transfer`: host/device copies of slice batches, overlapped on a GPU;
* :mod:`~ctdenoise.runtime.denoise`: :func:`~ctdenoise.runtime.denoise.denoise_hu` and
  :func:`~ctdenoise.runtime.denoise.denoise_volume`, slice by slice in bounded memory.
"""
