"""FP8 frozen base for LoRA training on Hopper: e4m3 weights with row-wise scales, FP8 matmuls forward and backward.

Why: in a QLoRA step at 16k tokens the frozen base's matmuls run three times (forward, the checkpoint's recompute,
the input gradient; a frozen weight needs no weight gradient) and take about half the step. Hopper's FP8 tensor
cores run them at up to twice the bf16 rate, and an e4m3 copy of the base is 1 byte per weight (NF4 is about 0.5,
bf16 is 2) that needs no dequantisation before each matmul. No library ships this for a frozen, quantised base
(torchao's float8 training quantises trainable weights, and keeps a bf16 master copy of each).

Numerics: weights are quantised once per output row (scale = row absmax / 448); activations and incoming gradients
per token row at every call. The input gradient grad_y @ W has W's per-output-row scale along its reduction
dimension, so that scale is folded into grad_y before grad_y is quantised. Training on this base is guarded by the
loss-curve comparison in benchmarks/train_throughput.py --guard (within 1% of the bf16 base over 200 steps).

Kernels: the per-call row-wise quantisation and the transposed weight copy of the backward are Triton kernels
(fp8_kernels.py: one read of each row; tiled transpose) on CUDA, with the same bytes and scales as the eager torch
code that CPUs run; benchmarks/fp8_kernels.py measures eager, torch.compile and Triton side by side.

NF4 storage (`quantization: nf4-fp8`): the same FP8 matmuls on a base kept in bitsandbytes NF4 (about 0.53 bytes a
weight with double quantisation, against 1 for e4m3: 3.8 GiB instead of 7.6 for Qwen3-8B's decoder). Each call
rebuilds the one e4m3 weight it multiplies from NF4 (one Triton kernel, byte for byte bitsandbytes' dequantisation
then the row-wise quantisation; the backward's transposed copy is written directly). On an H200 the rebuilds take
64 ms of a 1.6 s step and the setup is still faster than the e4m3-stored base (our reading: the rebuilt weight is
still in L2 when the GEMM reads it, and no transposed copy is made), at 3.3 GiB less
(benchmarks/results/train_nf4fp8_h200.txt). Its weights carry NF4's rounding, then e4m3's.

Only on GPUs with FP8 tensor cores (compute capability 8.9+: Ada, Hopper); anywhere else `quantization: fp8` (or
nf4-fp8) is refused with the reason (the user's A100 pods keep nf4). CPUs run the same code through torch's
reference _scaled_mm, for tests.
"""

from __future__ import annotations

import logging

import torch

from .fp8_format import FP8, FP8_MAX  # here too for the callers that import them from fp8 (tests, benchmarks)

log = logging.getLogger(__name__)


class FP8Unsupported(RuntimeError):
    """quantization: fp8 asked for on a device without FP8 matmuls."""


def check_fp8_device(device: torch.device | str) -> None:
    """Refuse FP8 training where the GPU has no FP8 tensor cores (A100 and older): say what to use instead."""
    device = torch.device(device)
    if device.type != "cuda":
        return  # CPUs: torch's reference kernel (slow; tests only)
    major, minor = torch.cuda.get_device_capability(device)
    if (major, minor) < (8, 9):
        name = torch.cuda.get_device_name(device)
        raise FP8Unsupported(
            f"training.quantization is 'fp8' but {name} (compute capability {major}.{minor}) has no FP8 matmuls; "
            "they need 8.9+ (Ada, Hopper). Use quantization: nf4 on this GPU."
        )


def _quantize_rowwise_eager(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    amax = x.abs().amax(dim=-1, keepdim=True).float()
    scale = torch.clamp(amax, min=1e-12) / FP8_MAX
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(FP8), scale


def _quantize_scaled_rowwise_eager(x: torch.Tensor, column_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return _quantize_rowwise_eager(x.float() * column_scale)


def quantize_rowwise(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 tensor, fp32 scale per row) with x ~= q * scale; one Triton kernel on CUDA (fp8_kernels.py)."""
    if x.device.type != "cuda":
        return _quantize_rowwise_eager(x)
    from .fp8_kernels import quantize_rowwise_triton

    return quantize_rowwise_triton(x)


def quantize_scaled_rowwise(x: torch.Tensor, column_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """quantize_rowwise(x * column_scale) without a separate pass for the product."""
    if x.device.type != "cuda":
        return _quantize_scaled_rowwise_eager(x, column_scale)
    from .fp8_kernels import quantize_rowwise_triton

    return quantize_rowwise_triton(x, column_scale)


def transposed(x: torch.Tensor) -> torch.Tensor:
    """x.t().contiguous(); in square tiles by a Triton kernel on CUDA (fp8_kernels.py)."""
    if x.device.type != "cuda":
        return x.t().contiguous()
    from .fp8_kernels import transpose_triton

    return transpose_triton(x)


class _LastInput:
    """The quantised form of the last input tensor, for the projections that read the same tensor.

    q/k/v read one hidden state and gate/up another: quantising each once saves three of the seven activation
    quantisations of a layer's forward. The entry holds the input only weakly and is dropped when it dies; a tensor
    changed in place (its version counter moved) is quantised again.
    """

    def __init__(self, quantize=None):
        self._entry = None
        self._quantize = quantize  # None: this module's quantize_rowwise (e4m3); int8.py passes its own

    def quantized(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        import weakref

        entry = self._entry
        if entry is not None and entry[0]() is x and entry[1] == x._version:
            return entry[2], entry[3]
        q, scale = (self._quantize or quantize_rowwise)(x.reshape(-1, x.shape[-1]))
        self._entry = (weakref.ref(x, lambda _: self.clear()), x._version, q, scale)
        return q, scale

    def clear(self) -> None:
        self._entry = None


_last_input = _LastInput()


def fp8_matmul(q_a: torch.Tensor, scale_a: torch.Tensor, q_b_colmajor: torch.Tensor, scale_b: torch.Tensor,
               out_dtype: torch.dtype) -> torch.Tensor:
    """(q_a * scale_a) @ (q_b * scale_b) in FP8 on the tensor cores; q_b must be column-major, scales row-wise."""
    return torch._scaled_mm(q_a, q_b_colmajor, scale_a=scale_a, scale_b=scale_b, out_dtype=out_dtype)


class _FrozenFP8Matmul(torch.autograd.Function):
    """y = x @ W^T for a frozen FP8 W: saves nothing but W for backward, returns only the input gradient."""

    @staticmethod
    def forward(ctx, x, weight, weight_scale):
        ctx.save_for_backward(weight, weight_scale)
        ctx.input_shape = x.shape
        return _forward_product(x, weight, weight_scale)

    @staticmethod
    def backward(ctx, grad_y):
        weight, weight_scale = ctx.saved_tensors
        # The (out, in) operand must be column-major: a transposed copy of the FP8 weight, one layer at a time.
        return _input_gradient(grad_y, transposed(weight), weight_scale, ctx.input_shape), None, None


def _forward_product(x: torch.Tensor, weight: torch.Tensor, weight_scale: torch.Tensor) -> torch.Tensor:
    """x @ (weight * weight_scale)^T in FP8 for an e4m3 (out, in) weight with one scale per output row."""
    q_x, scale_x = _last_input.quantized(x)
    # weight is (out, in) row-major, so weight.t() is the column-major (in, out) operand _scaled_mm wants.
    y = fp8_matmul(q_x, scale_x, weight.t(), weight_scale.t(), x.dtype)
    return y.view(*x.shape[:-1], weight.shape[0])


def _input_gradient(grad_y: torch.Tensor, weight_t: torch.Tensor, weight_scale: torch.Tensor,
                    input_shape: torch.Size) -> torch.Tensor:
    """grad_y @ (W * weight_scale) in FP8 for a frozen e4m3 W given as its transposed (in, out) contiguous copy."""
    flat = grad_y.reshape(-1, grad_y.shape[-1])
    # s_W (per output row of W) runs along this matmul's reduction, so it is folded into grad_y first; the second
    # operand's scale is then 1.
    q_g, scale_g = quantize_scaled_rowwise(flat, weight_scale.t())
    ones = torch.ones((1, weight_t.shape[0]), dtype=torch.float32, device=weight_t.device)
    grad_x = fp8_matmul(q_g, scale_g, weight_t.t(), ones, grad_y.dtype)  # weight_t.t(): (out, in), column-major
    return grad_x.view(input_shape)


class _FrozenNF4FP8Matmul(torch.autograd.Function):
    """y = x @ W^T for a frozen NF4 W multiplied in FP8: saves no tensor; backward rebuilds the e4m3 weight."""

    @staticmethod
    def forward(ctx, x, linear):
        ctx.linear = linear  # not a saved tensor: activation offloading has nothing of it to move
        ctx.input_shape = x.shape
        return _forward_product(x, linear.fp8_weight(), linear.weight_scale)

    @staticmethod
    def backward(ctx, grad_y):
        linear = ctx.linear
        return _input_gradient(grad_y, linear.fp8_weight(transpose=True), linear.weight_scale,
                               ctx.input_shape), None


class FP8FrozenLinear(torch.nn.Module):
    """A frozen nn.Linear whose weight is stored in e4m3 with one fp32 scale per output row."""

    def __init__(self, weight_fp8: torch.Tensor, weight_scale: torch.Tensor, bias: torch.Tensor | None):
        super().__init__()
        self.in_features, self.out_features = weight_fp8.shape[1], weight_fp8.shape[0]
        self.register_buffer("weight_fp8", weight_fp8)
        self.register_buffer("weight_scale", weight_scale)
        self.register_buffer("bias", bias)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear) -> "FP8FrozenLinear":
        with torch.no_grad():
            q, scale = _quantize_rowwise_eager(linear.weight.data)
            bias = linear.bias.data.clone() if linear.bias is not None else None
        return cls(q, scale, bias)

    def dequantized_weight(self, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        return (self.weight_fp8.float() * self.weight_scale).to(dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _FrozenFP8Matmul.apply(x, self.weight_fp8, self.weight_scale)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, e4m3 row-wise"


class NF4FrozenLinear(torch.nn.Module):
    """A frozen linear stored in bitsandbytes NF4 (64-value blocks, double quantisation): what the NF4-stored bases
    that multiply in 8 bits share (NF4FP8FrozenLinear here, int8.NF4Int8FrozenLinear). Subclasses name their mode."""

    mode = "nf4"

    def __init__(self, packed_weight: torch.Tensor, quant_state, bias: torch.Tensor | None):
        super().__init__()
        self.out_features, self.in_features = quant_state.shape
        if (packed_weight.dtype != torch.uint8 or not packed_weight.is_contiguous()
                or packed_weight.numel() * 2 != self.out_features * self.in_features
                or self.in_features % quant_state.blocksize):
            raise ValueError(
                f"{self.mode} base: a ({self.out_features}, {self.in_features}) weight needs its NF4 bytes as one "
                f"contiguous uint8 tensor of {self.out_features * self.in_features // 2} (got {packed_weight.dtype}, "
                f"{packed_weight.numel()}) and in_features a multiple of the block size {quant_state.blocksize}")
        self.register_buffer("weight_nf4", packed_weight)
        self.quant_state = quant_state  # absmax, its own quantisation state and the NF4 code, on the weight's device
        self.register_buffer("bias", bias)
        self._offset = float(quant_state.offset) if quant_state.nested else 0.0  # read once, not synced per call

    @classmethod
    def from_linear(cls, linear: torch.nn.Module) -> "NF4FrozenLinear":
        """From a bitsandbytes Linear4bit (its NF4 bytes taken as they are) or a plain nn.Linear (quantised here)."""
        import bitsandbytes as bnb
        import bitsandbytes.functional as bnb_functional

        bias = linear.bias.data if linear.bias is not None else None
        if isinstance(linear, bnb.nn.Linear4bit):
            state = linear.weight.quant_state
            if state.quant_type != "nf4":
                raise TypeError(f"{cls.mode} base: expected an NF4 Linear4bit, got quant_type {state.quant_type!r}")
            return cls(linear.weight.data, state, bias)
        with torch.no_grad():
            packed, state = bnb_functional.quantize_4bit(linear.weight.data, blocksize=64, quant_type="nf4",
                                                         compress_statistics=True, quant_storage=torch.uint8)
        return cls(packed, state, bias)

    def dequantized_weight(self, dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
        """bitsandbytes' own dequantisation of the NF4 weight, (out, in)."""
        import bitsandbytes.functional as bnb_functional

        return bnb_functional.dequantize_4bit(self.weight_nf4, self.quant_state).to(dtype)


class NF4FP8FrozenLinear(NF4FrozenLinear):
    """A frozen linear stored in bitsandbytes NF4 (64-value blocks, double quantisation) and multiplied in FP8.

    Each call rebuilds the e4m3 weight it multiplies: NF4 -> the compute dtype exactly as bitsandbytes dequantises,
    then e4m3 with the weight's row scales (fixed: the weight is frozen, so they are computed once here). On CUDA one
    Triton kernel does both, and writes the backward's transposed copy directly (fp8_kernels.nf4_to_e4m3_triton);
    CPUs run bitsandbytes' dequantisation and the eager quantisation, with the same bytes.
    """

    mode = "nf4-fp8"

    def __init__(self, packed_weight: torch.Tensor, quant_state, bias: torch.Tensor | None):
        super().__init__(packed_weight, quant_state, bias)
        with torch.no_grad():
            _, scale = quantize_rowwise(self.dequantized_weight(quant_state.dtype))
        self.register_buffer("weight_scale", scale)  # fp32 (out, 1): row absmax / 448 of the dequantised weight

    def fp8_weight(self, transpose: bool = False) -> torch.Tensor:
        """The e4m3 weight for this call, (out, in), or (in, out) contiguous when transpose; scales: weight_scale."""
        if self.weight_nf4.device.type == "cuda":
            from .fp8_kernels import nf4_to_e4m3_triton

            return nf4_to_e4m3_triton(self.weight_nf4, self.quant_state, self._offset, self.weight_scale,
                                      transpose=transpose)
        weight = self.dequantized_weight(self.quant_state.dtype).float()
        q = (weight / self.weight_scale).clamp(-FP8_MAX, FP8_MAX).to(FP8)
        return q.t().contiguous() if transpose else q

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = _FrozenNF4FP8Matmul.apply(x, self)
        return y if self.bias is None else y + self.bias.to(y.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, NF4 stored, e4m3 row-wise matmuls"
