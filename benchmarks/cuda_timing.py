"""CUDA-event timing shared by the kernel benchmarks (benchmarks/fp8_kernels.py, benchmarks/decode_attention.py)."""

from __future__ import annotations

import statistics


def time_us(fn, repeats: int) -> float:
    """Median microseconds of fn() over `repeats` CUDA-event timed calls (after three warm-up calls)."""
    import torch

    for _ in range(3):
        fn()
    samples = []
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        samples.append(start.elapsed_time(end) * 1000)
    return statistics.median(samples)
