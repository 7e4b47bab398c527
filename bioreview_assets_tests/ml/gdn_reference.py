"""Inputs, runners and error measure for the Gated DeltaNet parity test (test_gated_delta_rule_parity.py).

The inputs are made as Qwen3.5's linear-attention layer makes them (transformers' Qwen3_5GatedDeltaNet): bf16 q, k, v
(L2-normalised in the kernel), a float32 log-space decay g = -A * softplus(a + dt_bias) and beta = sigmoid(b).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

GRADIENTS = ("dq", "dk", "dv", "dg", "dbeta")
# Largest relative L2 error (||x - ref|| / ||ref||) of the output and of each gradient. bf16 inputs and outputs give
# about 4e-3 per element; the kernel's fp32 accumulation over 256 chunks of a 16k sequence adds little to that. A
# miscompiled kernel is off by tens of percent or more (test_error_measure_sees_a_wrong_gradient_cpu shows the
# measure sees it).
TOLERANCE = 2e-2


@dataclass(frozen=True)
class Shape:
    name: str
    batch: int
    tokens: int
    key_heads: int
    value_heads: int
    key_dim: int
    value_dim: int


def gdn_inputs(shape: Shape, *, device: str, dtype: torch.dtype, seed: int) -> dict[str, torch.Tensor]:
    """q, k, v, beta, the upstream gradient d_o (in dtype) and g (float32), deterministic for a seed."""
    gen = torch.Generator(device="cpu").manual_seed(seed)
    b, t = shape.batch, shape.tokens

    def randn(*size):
        return torch.randn(*size, generator=gen)

    # Per-head decay rates spread over three decades, as trained A_log values are: some heads forget within a few
    # tokens, others keep state across the whole sequence.
    rate = torch.exp(torch.empty(shape.value_heads).uniform_(-6.9, 0.0, generator=gen))
    g = -rate * torch.nn.functional.softplus(randn(b, t, shape.value_heads) + 1.0)
    out = {
        "q": randn(b, t, shape.key_heads, shape.key_dim),
        "k": randn(b, t, shape.key_heads, shape.key_dim),
        "v": randn(b, t, shape.value_heads, shape.value_dim),
        "beta": torch.sigmoid(randn(b, t, shape.value_heads)),
        "d_o": randn(b, t, shape.value_heads, shape.value_dim),
    }
    out = {name: x.to(device=device, dtype=dtype) for name, x in out.items()}
    out["g"] = g.to(device=device, dtype=torch.float32)
    return out


def _unwrapped(function):
    # transformers decorates its torch functions with a hub-kernel / fla dispatcher: the reference is the torch body.
    return getattr(function, "__wrapped__", function)


def torch_chunk_reference():
    from transformers.models.qwen3_5 import modeling_qwen3_5

    return _unwrapped(modeling_qwen3_5.torch_chunk_gated_delta_rule)


def torch_recurrent_reference():
    from transformers.models.qwen3_5 import modeling_qwen3_5

    return _unwrapped(modeling_qwen3_5.torch_recurrent_gated_delta_rule)


def _run(function, inputs: dict[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    names = ("q", "k", "v", "g", "beta")
    leaves = {n: (inputs[n] if dtype is None else inputs[n].to(dtype)).detach().clone().requires_grad_(True)
              for n in names}
    out, _ = function(leaves["q"], leaves["k"], leaves["v"], g=leaves["g"], beta=leaves["beta"],
                      use_qk_l2norm_in_kernel=True)
    d_o = inputs["d_o"] if dtype is None else inputs["d_o"].to(dtype)
    out.backward(d_o.to(out.dtype))
    result = {"o": out.detach().float()}
    for n in names:
        result[f"d{n}"] = leaves[n].grad.detach().float()
    return result


def run_reference(inputs: dict[str, torch.Tensor], function) -> dict[str, torch.Tensor]:
    """Output and gradients of a torch reference, everything in float32."""
    return _run(function, inputs, torch.float32)


@contextlib.contextmanager
def _guard_lifted():
    """fla's Hopper guard off, for the one test that shows why it exists."""
    from fla.ops.common import chunk_o

    saved = chunk_o.TRITON_ABOVE_3_7_1
    chunk_o.TRITON_ABOVE_3_7_1 = True
    try:
        yield
    finally:
        chunk_o.TRITON_ABOVE_3_7_1 = saved


def run_fla(inputs: dict[str, torch.Tensor], *, lift_guard: bool) -> dict[str, torch.Tensor]:
    """Output and gradients of fla's chunk_gated_delta_rule on the inputs as the model gives them (bf16, g fp32)."""
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule

    with _guard_lifted() if lift_guard else contextlib.nullcontext():
        return _run(chunk_gated_delta_rule, inputs, None)


def relative_errors(result: dict[str, torch.Tensor], reference: dict[str, torch.Tensor]) -> dict[str, float]:
    """||result - reference|| / ||reference|| for the output and each gradient (float64 norms)."""
    errors = {}
    for name in ("o", *GRADIENTS):
        ref = reference[name].double()
        errors[name] = float((result[name].double() - ref).norm() / ref.norm().clamp_min(1e-30))
    return errors
