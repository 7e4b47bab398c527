"""Qwen3.5's Gated DeltaNet kernel: flash-linear-attention's chunk_gated_delta_rule against transformers' fp32 torch
reference, forward and every gradient (dq, dk, dv, dg, dbeta), at the Qwen3.5-9B head shapes and 16k tokens.

Why: fla-core 0.6.0 refuses its gated backward on Hopper with Triton in [3.4.0, 3.7.1) (fla #640: a Triton miscompile
of chunk_bwd_dqkwg at tile width BK=64, i.e. key head dims 33..64). The production image's torch 2.13 pins Triton
3.7.1; this test is what lets us trust the kernels we train with on whatever Triton the run has:
* `qwen3.5-9b` (key head dim 128, BK=128): must match the reference within TOLERANCE on every Triton;
* `head-dim-64` (BK=64) with fla's guard lifted: must fail on a Triton inside the bad range and pass above it,
  which shows the guard's reason on this machine (and that the test can tell a wrong kernel from a right one).
On CPU (CI) the reference itself is checked: the chunked torch path against the token-by-token recurrent one.
Run with -s to print the error table (benchmarks/results/gdn_parity_*.txt holds the GPU runs).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util

import pytest
import torch
from packaging.version import Version

from bioreview_assets_tests.ml.gdn_reference import (
    GRADIENTS,
    TOLERANCE,
    Shape,
    gdn_inputs,
    relative_errors,
    run_fla,
    run_reference,
    torch_chunk_reference,
    torch_recurrent_reference,
)

QWEN35_9B = Shape("qwen3.5-9b", batch=1, tokens=16384, key_heads=16, value_heads=32, key_dim=128, value_dim=128)
HEAD_DIM_64 = Shape("head-dim-64", batch=1, tokens=16384, key_heads=16, value_heads=32, key_dim=64, value_dim=64)
BAD_TRITON = (Version("3.4.0"), Version("3.7.1"))


def _triton() -> Version | None:
    try:
        return Version(importlib.metadata.version("triton"))
    except importlib.metadata.PackageNotFoundError:
        return None


def _table(title: str, errors: dict[str, float]) -> str:
    cells = "  ".join(f"{name} {value:.2e}" for name, value in errors.items())
    return f"{title}: {cells}  (tolerance {TOLERANCE:.0e})"


def test_chunked_reference_matches_recurrent_reference_cpu():
    """The reference we trust on GPU is itself right: chunked fp32 == token-by-token fp32, outputs and gradients."""
    shape = Shape("tiny", batch=1, tokens=80, key_heads=1, value_heads=2, key_dim=16, value_dim=8)  # 2 chunks, padded
    inputs = gdn_inputs(shape, device="cpu", dtype=torch.float32, seed=0)
    chunked = run_reference(inputs, torch_chunk_reference())
    recurrent = run_reference(inputs, torch_recurrent_reference())
    errors = relative_errors(chunked, recurrent)
    print(_table("cpu chunked vs recurrent", errors))
    assert set(errors) == {"o", *GRADIENTS}
    assert max(errors.values()) < 1e-4, errors


def test_error_measure_sees_a_wrong_gradient_cpu():
    """relative_errors is not blind: a kernel that drops the decay gradient's sign is far outside the tolerance."""
    shape = Shape("tiny", batch=1, tokens=80, key_heads=1, value_heads=1, key_dim=16, value_dim=8)
    inputs = gdn_inputs(shape, device="cpu", dtype=torch.float32, seed=1)
    right = run_reference(inputs, torch_chunk_reference())
    wrong = dict(right, dg=-right["dg"])
    assert relative_errors(wrong, right)["dg"] > 10 * TOLERANCE


needs_fla = pytest.mark.skipif(
    not torch.cuda.is_available() or importlib.util.find_spec("fla") is None,
    reason="fla's kernels are Triton on CUDA: needs a GPU and flash-linear-attention (the H200 runs this)",
)


@needs_fla
def test_fla_matches_reference_at_qwen35_9b_shape():
    inputs = gdn_inputs(QWEN35_9B, device="cuda", dtype=torch.bfloat16, seed=0)
    errors = relative_errors(run_fla(inputs, lift_guard=False), run_reference(inputs, torch_chunk_reference()))
    print(_table(f"{QWEN35_9B.name} fla vs fp32 reference, triton {_triton()}", errors))
    assert max(errors.values()) <= TOLERANCE, errors


@needs_fla
def test_head_dim_64_shows_the_guards_reason():
    """BK=64 with the guard lifted: wrong on Hopper inside the bad Triton range, right elsewhere."""
    inputs = gdn_inputs(HEAD_DIM_64, device="cuda", dtype=torch.bfloat16, seed=0)
    errors = relative_errors(run_fla(inputs, lift_guard=True), run_reference(inputs, torch_chunk_reference()))
    triton = _triton()
    hopper = torch.cuda.get_device_capability()[0] == 9
    miscompiled = hopper and BAD_TRITON[0] <= triton < BAD_TRITON[1]
    print(_table(f"{HEAD_DIM_64.name} fla (guard lifted) vs fp32 reference, triton {triton}, "
                 f"{'expected wrong' if miscompiled else 'expected right'}", errors))
    if miscompiled:
        assert max(errors[name] for name in GRADIENTS) > TOLERANCE, errors
    else:
        assert max(errors.values()) <= TOLERANCE, errors
