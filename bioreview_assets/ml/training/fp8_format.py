"""The e4m3 format of the FP8 base, below both fp8.py (eager code, CPU and GPU) and fp8_kernels.py (Triton, CUDA):
the kernels quantise to the same dtype and bound as the eager code without importing fp8.py (which imports them)."""

from __future__ import annotations

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
