"""What skipping CLIP's layer4 saves: CPU forward time of one 512x512 slice, with and without layer4.

The public CLIPDenoising code computes layer4 of the CLIP ResNet and discards it; ctdenoise never builds
it. "with layer4" runs an RN50 layer4 (open_clip bottlenecks, same shapes) on the layer3 output inside
the same forward pass, through a forward hook, so both timings run the identical denoiser code.

Usage: python benchmarks/layer4_saving.py OUT.json [--threads 2] [--repeats 5] [--size 512]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch

from ctdenoise.model import CLIPDenoiser, ModelConfig
from ctdenoise.model.config import encoder_spec
from ctdenoise.model.encoder import make_stage


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    """Median wall time of ``run()`` over ``repeats`` calls after one warm-up call."""
    run()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path, help="JSON file to write")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--size", type=int, default=512)
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = ModelConfig()
    spec = encoder_spec(config.encoder_name)
    model = CLIPDenoiser(config).eval()
    layer4 = make_stage(spec.width * 16, spec.width * 8, spec.layers[3], stride=2).eval()
    image = torch.rand(1, 1, args.size, args.size)

    def forward() -> torch.Tensor:
        with torch.inference_mode():
            return model(image)

    without = median_seconds(forward, args.repeats)
    def run_layer4(_module: torch.nn.Module, _inputs: object, layer3_output: torch.Tensor) -> None:
        layer4(layer3_output)  # computed and discarded, as the public code does

    hook = model.encoder.layer3.register_forward_hook(run_layer4)
    with_layer4 = median_seconds(forward, args.repeats)
    hook.remove()

    result = {
        "input": [1, 1, args.size, args.size],
        "encoder": config.encoder_name,
        "threads": args.threads,
        "repeats": args.repeats,
        "statistic": "median wall seconds per forward, after 1 warm-up",
        "seconds_without_layer4": round(without, 4),
        "seconds_with_layer4": round(with_layer4, 4),
        "time_saved_percent": round(100 * (with_layer4 - without) / with_layer4, 1),
        "layer4_parameters_not_held": sum(p.numel() for p in layer4.parameters()),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(f"{'variant':<24}{'seconds':>10}")
    print(f"{'ctdenoise (no layer4)':<24}{without:>10.3f}")
    print(f"{'with layer4 computed':<24}{with_layer4:>10.3f}")
    print(f"saved: {result['time_saved_percent']}% of the forward time; "
          f"{result['layer4_parameters_not_held']:,} layer4 parameters not held")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
