"""Moving slice batches between host memory and the compute device, overlapped with compute on a GPU.

On the CPU a batch is used where it lies. On a CUDA device, :class:`BatchTransfer` stages batches in
two reusable pinned host buffers, so host-to-device and device-to-host copies are asynchronous
(``non_blocking``) and the host copies batch *k*'s result into the output array while the GPU already
computes batch *k + 1*: the GPU does not wait for the host between batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass
class _Pending:
    """A result whose device-to-host copy was started but not yet waited for."""

    host: Tensor
    target: np.ndarray
    done: torch.cuda.Event


class BatchTransfer:
    """Upload (slices, rows, cols) float32 batches to ``device`` and download results into numpy arrays.

    ``batch_shape`` is the largest batch (batch_size, rows, cols). Results handed to :meth:`download`
    are written into their target array at the latest by the next :meth:`download` or :meth:`flush`;
    both return how many slices were completed by that call.
    """

    def __init__(self, device: torch.device, batch_shape: tuple[int, int, int]) -> None:
        self.device = device
        self.pinned = device.type == "cuda"
        self._slot = 0
        self._pending: _Pending | None = None
        if self.pinned:
            self._inputs = [torch.empty(batch_shape, dtype=torch.float32, pin_memory=True) for _ in range(2)]
            self._outputs = [torch.empty(batch_shape, dtype=torch.float32, pin_memory=True) for _ in range(2)]

    def upload(self, slices: np.ndarray, pad_to: int | None = None) -> Tensor:
        """The (n, rows, cols) ``slices`` as a tensor on the device, padded to ``pad_to`` slices by
        repeating the last one (for compiled models that need a fixed batch size)."""
        batch = torch.from_numpy(slices)
        if pad_to is not None and batch.shape[0] < pad_to:
            batch = torch.cat([batch, batch[-1:].expand(pad_to - batch.shape[0], *batch.shape[1:])])
        if not self.pinned:
            return batch
        staging = self._inputs[self._slot][: batch.shape[0]]
        staging.copy_(batch)
        return staging.to(self.device, non_blocking=True)

    def download(self, result: Tensor, target: np.ndarray) -> int:
        """Start copying ``result`` (on the device) into ``target``; finish the previous batch's copy."""
        if not self.pinned:
            target[...] = result.float().cpu().numpy()
            return target.shape[0]
        host = self._outputs[self._slot][: result.shape[0]]
        host.copy_(result, non_blocking=True)
        done = torch.cuda.Event()
        done.record(torch.cuda.current_stream(self.device))
        finished = self.flush()
        self._pending = _Pending(host, target, done)
        self._slot = 1 - self._slot
        return finished

    def flush(self) -> int:
        """Wait for the started copy (if any) and write it into its target; return its slice count."""
        pending, self._pending = self._pending, None
        if pending is None:
            return 0
        pending.done.synchronize()
        pending.target[...] = pending.host.numpy()
        return pending.target.shape[0]
