"""The CUDA graphs backend: the forward pass captured once per input shape and replayed on the GPU.

The GPU then runs a batch without one kernel launch per layer from Python; callers pad batches to one
fixed size so a single graph is captured.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

NAME = "cuda_graphs"
NEEDS = "a CUDA device (--device cuda or auto on a machine with a GPU)"


def is_available(device: torch.device) -> bool:
    """Whether ``device`` is a CUDA device and CUDA works here."""
    return device.type == "cuda" and torch.cuda.is_available()


def wrap(forward: Callable[[Tensor], Tensor]) -> Callable[[Tensor], Tensor]:
    """``forward`` replayed from CUDA graphs (:class:`CUDAGraphForward`)."""
    return CUDAGraphForward(forward)


class CUDAGraphForward:
    """Runs ``forward`` by replaying a CUDA graph captured on the first call with each input shape.

    The first call with a shape runs ``forward`` three times on a side stream (cuDNN picks its kernels),
    then captures one call into a graph with static input and output buffers; every call copies its
    input into the static buffer, replays the graph and returns a copy of the static output (so results
    of earlier calls stay valid). Callers keep the number of shapes small by padding batches.
    """

    WARMUP_CALLS = 3

    def __init__(self, forward: Callable[[Tensor], Tensor]) -> None:
        self.forward = forward
        self._graphs: dict[tuple[tuple[int, ...], torch.dtype], tuple[Tensor, torch.cuda.CUDAGraph, Tensor]] = {}

    def __call__(self, x: Tensor) -> Tensor:
        key = (tuple(x.shape), x.dtype)
        if key not in self._graphs:
            self._graphs[key] = self._capture(x)
        static_input, graph, static_output = self._graphs[key]
        static_input.copy_(x)
        graph.replay()
        return static_output.clone()

    def _capture(self, x: Tensor) -> tuple[Tensor, torch.cuda.CUDAGraph, Tensor]:
        static_input = x.clone(memory_format=torch.channels_last)
        side = torch.cuda.Stream(x.device)
        side.wait_stream(torch.cuda.current_stream(x.device))
        with torch.cuda.stream(side):
            for _ in range(self.WARMUP_CALLS):
                self.forward(static_input)
        torch.cuda.current_stream(x.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_output = self.forward(static_input)
        return static_input, graph, static_output
