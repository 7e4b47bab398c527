"""INT8 matmuls on an NF4 frozen base for LoRA training without FP8 (`quantization: nf4-int8`; A100s and newer).

Why: `nf4-fp8` (fp8.py) multiplies the frozen base in FP8, which A100s (compute capability 8.0) do not have. Their
tensor cores run INT8 at twice the bf16 rate (624 vs 312 TOPS dense; Hopper likewise), so the same design in INT8
takes the frozen base's three matmuls per step (forward, the checkpoint's recompute, the input gradient) to the faster
rate on the GPUs users actually train on.

Design (the nf4-fp8 one with INT8 in place of e4m3; the LoRA path and everything trainable stay bf16):
* storage: the bitsandbytes NF4 bytes the nf4 loader made (fp8.NF4FrozenLinear, shared with nf4-fp8).
* forward y = x @ W^T: each call rebuilds W (out, in) from NF4 and rounds it to int8 with one fixed scale per output
  row (row absmax / 127 of the dequantised weight, computed once: the weight is frozen); x is rounded to int8 per
  token row at every call (once per input tensor: q/k/v and gate/up share it, fp8._LastInput); torch._int_mm
  multiplies with int32 accumulation (exact), and the product is rescaled by the two scale vectors.
* input gradient dx = dy @ W: dy is rounded per token row; W's reduction dimension is now its output dimension, so
  its per-output-row scales would sit inside the sum. Instead the transposed copy W^T (in, out) is rounded per row
  of W^T, i.e. per input column of W, with its own fixed scales, which then sit outside the sum as in the forward.
  (nf4-fp8 folds W's row scales into dy instead; e4m3's exponent absorbs that, int8's 8 uniform bits would not.)
* numerics: int8 with per-row absmax scales keeps ~1/254 of each row's largest value as its step; the CPU test
  (bioreview_assets_tests/ml/test_training_int8.py) holds the forward and the input gradient within 2% (relative
  Frobenius error) of an fp32 linear on the same NF4 weight, and the loss-curve guard (train_throughput.py --guard
  --guard-variants ours-bf16,ours-nf4int8,ours) is the GPU-side check against nf4.

Kernels: torch._int_mm (cuBLASLt INT8 GEMM on CUDA, an exact reference on CPUs: the tests run the same code). On CUDA
it needs more than 16 rows (padded here when a call has fewer) and inner/outer sizes divisible by 8 (every Qwen
projection is). The NF4 -> int8 rebuild is bitsandbytes' dequantisation then torch rounding (a fused Triton kernel,
as nf4-fp8 has, is the next step once GPU measurements show its cost).
"""

from __future__ import annotations

import torch

from .fp8 import NF4FrozenLinear, _LastInput

INT8_MAX = 127.0
INT8_MIN_CAPABILITY = (8, 0)  # Ampere's INT8 tensor cores (A100); the design needs no FP8


class Int8Unsupported(RuntimeError):
    """quantization: nf4-int8 asked for on a GPU older than Ampere."""


def check_int8_device(device: torch.device | str) -> None:
    """Refuse INT8 training on GPUs before Ampere (compute capability 8.0), saying what to use instead."""
    device = torch.device(device)
    if device.type != "cuda":
        return  # CPUs: torch._int_mm's reference kernel (tests)
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < INT8_MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        raise Int8Unsupported(
            f"training.quantization is 'nf4-int8' but {name} (compute capability {major}.{minor}) is older than "
            "Ampere (8.0), which the INT8 tensor-core path is built and measured for. Use quantization: nf4 on this GPU."
        )


def quantize_rowwise_int8(x: torch.Tensor, scale: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 tensor, fp32 scale per row) with x ~= q * scale; scale = row absmax / 127 unless given (fixed scales)."""
    x = x.float()
    if scale is None:
        scale = torch.clamp(x.abs().amax(dim=-1, keepdim=True), min=1e-12) / INT8_MAX
    return torch.round(x / scale).clamp_(-INT8_MAX, INT8_MAX).to(torch.int8), scale


_last_input = _LastInput(quantize_rowwise_int8)  # q/k/v (and gate/up) read one tensor: quantised once


# Rows per int8 GEMM: torch._int_mm returns int32 and the rescale needs fp32, 8 bytes a product before the bf16
# result; in slices of 4,096 rows that transient stays at 0.4 GiB for a 12,288-wide projection (1.5 GiB for a 16k
# row in one piece), and 4,096 x 4,096 x 12,288 is still a large GEMM.
ROWS_PER_GEMM = 4096


def int8_matmul(q_a: torch.Tensor, scale_a: torch.Tensor, q_b_colmajor: torch.Tensor, scale_b: torch.Tensor,
                out_dtype: torch.dtype) -> torch.Tensor:
    """(q_a * scale_a) @ (q_b * scale_b): int8 x int8 with int32 accumulation, then both row-wise scales.

    q_a (m, k) row-major with scale_a (m, 1); q_b (k, n) column-major (the transpose of a contiguous (n, k)) with
    scale_b (1, n).
    """
    rows = q_a.shape[0]
    out = torch.empty((rows, q_b_colmajor.shape[1]), dtype=out_dtype, device=q_a.device)
    for start in range(0, rows, ROWS_PER_GEMM):
        part = q_a[start:start + ROWS_PER_GEMM]
        n = part.shape[0]
        if part.is_cuda and n <= 16:  # cuBLASLt's int8 GEMM in torch._int_mm wants more than 16 rows
            part = torch.nn.functional.pad(part, (0, 0, 0, 17 - n))
        accumulated = torch._int_mm(part, q_b_colmajor)[:n]
        out[start:start + n] = (accumulated * scale_a[start:start + n]).mul_(scale_b)
    return out


class _FrozenNF4Int8Matmul(torch.autograd.Function):
    """y = x @ W^T for a frozen NF4 W multiplied in INT8: saves no tensor; backward rebuilds the int8 copy it needs."""

    @staticmethod
    def forward(ctx, x, linear):
        ctx.linear = linear  # not a saved tensor: activation offloading has nothing of it to move
        ctx.input_shape = x.shape
        q_x, scale_x = _last_input.quantized(x)
        # int8_weight(): (out, in) row-major, so its .t() is the column-major (in, out) operand.
        y = int8_matmul(q_x, scale_x, linear.int8_weight().t(), linear.row_scale.t(), x.dtype)
        return y.view(*x.shape[:-1], linear.out_features)

    @staticmethod
    def backward(ctx, grad_y):
        linear = ctx.linear
        q_g, scale_g = quantize_rowwise_int8(grad_y.reshape(-1, grad_y.shape[-1]))
        # int8_weight(transpose=True): W^T (in, out) contiguous, rounded per input column of W; its .t() is the
        # column-major (out, in) operand.
        grad_x = int8_matmul(q_g, scale_g, linear.int8_weight(transpose=True).t(), linear.column_scale.t(),
                             grad_y.dtype)
        return grad_x.view(ctx.input_shape), None


class NF4Int8FrozenLinear(NF4FrozenLinear):
    """A frozen linear stored in bitsandbytes NF4 and multiplied in INT8 (int32 accumulation), forward and backward."""

    mode = "nf4-int8"

    def __init__(self, packed_weight: torch.Tensor, quant_state, bias: torch.Tensor | None):
        super().__init__(packed_weight, quant_state, bias)
        with torch.no_grad():
            weight = self.dequantized_weight(quant_state.dtype).float()
            _, row_scale = quantize_rowwise_int8(weight)  # (out, 1): the forward's scales
            _, column_scale = quantize_rowwise_int8(weight.t())  # (in, 1): the input gradient's
        self.register_buffer("row_scale", row_scale)
        self.register_buffer("column_scale", column_scale)

    def int8_weight(self, transpose: bool = False) -> torch.Tensor:
        """This call's int8 weight: (out, in) on row scales, or (in, out) contiguous on column scales when transpose."""
        weight = self.dequantized_weight(self.quant_state.dtype)
        if transpose:
            return quantize_rowwise_int8(weight.t().contiguous(), self.column_scale)[0]
        return quantize_rowwise_int8(weight, self.row_scale)[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _FrozenNF4Int8Matmul.apply(x, self)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, NF4 stored, int8 row-wise matmuls"
