"""The engines a prepared model can run on, one module each, in the manner of pydicom's pixel data plugins.

Every backend module has the same small interface:

* ``NAME``: how reports and errors call it;
* ``NEEDS``: what it needs, in words a user can act on (a device, a package to install);
* ``is_available(device) -> bool``: whether it can run on the torch ``device`` here (imports nothing heavy);
* ``wrap(forward) -> forward``: the (B, S, H, W) -> (B, 1, H, W) callable run by this engine (S: the model's
  ``context_slices``; a backend takes the channel count from the batch it is given, as ONNX Runtime's export does).

:mod:`~ctdenoise.runtime.backends.eager` runs PyTorch as it is; :mod:`~ctdenoise.runtime.backends.compile`
(``torch.compile``) and :mod:`~ctdenoise.runtime.backends.cuda_graphs` wrap it (and each other);
:mod:`~ctdenoise.runtime.backends.onnx_runtime` replaces it. :func:`ctdenoise.runtime.prepare.prepare` picks
them from the settings and refuses one that is not available, naming what it needs.
"""
