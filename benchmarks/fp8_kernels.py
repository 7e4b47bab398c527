"""The FP8 base's per-call kernels at a 16k-token step's shapes: torch eager, torch.compile and our Triton kernels.

Row-wise e4m3 quantisation of activations and incoming gradients (ml/training/fp8.py quantize_rowwise and
quantize_scaled_rowwise; about 15 calls per decoder layer per step) and the transposed FP8 weight copy of each
linear's backward; and (quantization: nf4-fp8) the rebuild of each linear's e4m3 weight from NF4 (bitsandbytes'
dequantisation, then the row-wise kernel) that every forward, recompute and backward of that setup pays. Prints per shape: microseconds per call, effective GB/s (bytes the op must move), and agreement
with the eager form (share of identical e4m3 bytes, largest relative scale difference); then the estimate per
training step of the Qwen3-8B shape (36 layers; call counts below).

Run (a CUDA GPU with FP8: Ada, Hopper):  python3 benchmarks/fp8_kernels.py
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cuda_timing import time_us  # noqa: E402  (benchmarks/ is the script's folder, first on sys.path)

# Qwen3-8B: hidden 4096, intermediate 12288, 8 KV heads x 128 = 1024. Quantisations per layer and step, by row length:
# forward and the checkpoint's recompute each quantise the q/k/v input, the o input, the gate/up input (4096) and the
# down input (12288); the backward quantises the gradient of each of the seven outputs.
QUANT_CALLS = {("plain", 4096): 6, ("plain", 12288): 2,
               ("scaled", 4096): 3, ("scaled", 1024): 2, ("scaled", 12288): 2}
# One transposed weight copy per linear per backward, by (out, in).
TRANSPOSES = {(4096, 4096): 2, (1024, 4096): 2, (12288, 4096): 2, (4096, 12288): 1}
# nf4-fp8: one e4m3 weight rebuilt from NF4 per linear in the forward, the recompute and the backward, by (out, in).
NF4_REBUILDS = {(4096, 4096): 2 * 3, (1024, 4096): 2 * 3, (12288, 4096): 2 * 3, (4096, 12288): 3}
LAYERS = 36


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("fp8_kernels: needs a CUDA GPU (the Triton kernels and FP8 run only there)")
        return 1
    from bioreview_assets.ml.training import fp8
    from bioreview_assets.ml.training.fp8_kernels import quantize_rowwise_triton, transpose_triton

    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {args.tokens} token rows, median of "
          f"{args.repeats}")
    compiled_plain = torch.compile(fp8._quantize_rowwise_eager, dynamic=True)  # the path before the Triton kernel
    compiled_scaled = torch.compile(fp8._quantize_scaled_rowwise_eager, dynamic=True)
    compiled_transpose = torch.compile(lambda w: w.t().contiguous(), dynamic=False)
    step_ms: dict[str, float] = {"eager": 0.0, "compiled": 0.0, "triton": 0.0}
    print("row-wise quantisation                 eager us  compiled us  triton us  triton GB/s  "
          "same bytes (compiled, triton)  max scale rel diff")
    for (kind, n), calls in QUANT_CALLS.items():
        x = torch.randn(args.tokens, n, device="cuda", dtype=torch.bfloat16) * 3
        column = torch.rand(1, n, device="cuda", dtype=torch.float32) + 0.5
        if kind == "plain":
            setups = {"eager": lambda: fp8._quantize_rowwise_eager(x), "compiled": lambda: compiled_plain(x),
                      "triton": lambda: quantize_rowwise_triton(x)}
        else:
            setups = {"eager": lambda: fp8._quantize_scaled_rowwise_eager(x, column),
                      "compiled": lambda: compiled_scaled(x, column),
                      "triton": lambda: quantize_rowwise_triton(x, column)}
        outputs = {name: fn() for name, fn in setups.items()}
        q_ref, s_ref = outputs["eager"]
        same = {name: (q.view(torch.uint8) == q_ref.view(torch.uint8)).float().mean().item()
                for name, (q, _) in outputs.items()}
        scale_diff = ((outputs["triton"][1] - s_ref).abs() / s_ref).max().item()
        times = {name: time_us(fn, args.repeats) for name, fn in setups.items()}
        for name in step_ms:
            step_ms[name] += times[name] * calls * LAYERS / 1000
        moved = args.tokens * n * 3 + args.tokens * 4  # bf16 in, e4m3 out, one fp32 scale per row
        print(f"  {kind:<6} rows of {n:>5} (x{calls}/layer) {times['eager']:9.0f} {times['compiled']:12.0f} "
              f"{times['triton']:10.0f} {moved / times['triton'] / 1e3:12.0f}  "
              f"{same['compiled']:.6f}, {same['triton']:.6f} {scale_diff:19.2e}")
    transpose_ms = {"eager": 0.0, "compiled": 0.0, "triton": 0.0}
    print("transposed FP8 weight copy            eager us  compiled us  triton us  triton GB/s  identical")
    for (out_features, in_features), calls in TRANSPOSES.items():
        w = (torch.randn(out_features, in_features, device="cuda") * 50).clamp(-448, 448).to(fp8.FP8)
        setups = {"eager": lambda: w.t().contiguous(), "compiled": lambda: compiled_transpose(w),
                  "triton": lambda: transpose_triton(w)}
        identical = all(torch.equal(fn().view(torch.uint8), w.t().contiguous().view(torch.uint8))
                        for fn in setups.values())
        times = {name: time_us(fn, args.repeats) for name, fn in setups.items()}
        for name in transpose_ms:
            transpose_ms[name] += times[name] * calls * LAYERS / 1000
        print(f"  ({out_features:>5}, {in_features:>5}) (x{calls}/layer)        {times['eager']:9.0f} "
              f"{times['compiled']:12.0f} {times['triton']:10.0f} {2 * w.numel() / times['triton'] / 1e3:12.0f}  "
              f"{identical}")
    print(f"per training step ({LAYERS} layers): quantisation eager {step_ms['eager']:.1f} ms, compiled "
          f"{step_ms['compiled']:.1f} ms, triton {step_ms['triton']:.1f} ms; weight transposes eager "
          f"{transpose_ms['eager']:.1f} ms, compiled {transpose_ms['compiled']:.1f} ms, triton "
          f"{transpose_ms['triton']:.1f} ms")
    nf4_rebuilds(args)
    return 0


def nf4_rebuilds(args) -> None:
    """Microseconds per e4m3 weight rebuilt from NF4 (quantization: nf4-fp8): two-step torch path vs one Triton kernel."""
    import torch

    try:
        import bitsandbytes  # noqa: F401
    except ImportError as err:
        print(f"NF4 -> e4m3 weight rebuild: not measured, bitsandbytes is not importable here ({err})")
        return
    from bioreview_assets.ml.training.fp8 import FP8, FP8_MAX, NF4FP8FrozenLinear, quantize_rowwise, transposed

    def two_step(nf4, transpose):  # bitsandbytes' dequantisation, then the Triton row-wise kernel (and transpose)
        q = quantize_rowwise(nf4.dequantized_weight(nf4.quant_state.dtype))[0]
        return transposed(q) if transpose else q

    print("NF4 -> e4m3 weight rebuild      two-step us  (transposed)  triton us  (transposed)  triton GB/s  "
          "identical to bnb + eager  e4m3 error vs bf16")
    step_ms = {"two-step": 0.0, "triton": 0.0}
    for (out_features, in_features), calls in NF4_REBUILDS.items():
        linear = torch.nn.Linear(in_features, out_features, bias=False, device="cuda", dtype=torch.bfloat16)
        nf4 = NF4FP8FrozenLinear.from_linear(linear)
        eager = (nf4.dequantized_weight(nf4.quant_state.dtype).float() / nf4.weight_scale).clamp(
            -FP8_MAX, FP8_MAX).to(FP8)
        identical = (torch.equal(nf4.fp8_weight().view(torch.uint8), eager.view(torch.uint8))
                     and torch.equal(nf4.fp8_weight(transpose=True).view(torch.uint8),
                                     eager.t().contiguous().view(torch.uint8)))
        times = {(name, transpose): time_us(lambda: fn(transpose), args.repeats)
                 for name, fn in (("two-step", lambda t: two_step(nf4, t)), ("triton", lambda t: nf4.fp8_weight(t)))
                 for transpose in (False, True)}
        error = ((eager.float() * nf4.weight_scale - linear.weight.float()).norm() / linear.weight.float().norm()).item()
        for name in step_ms:  # a third of the rebuilds (the backward's) are transposed
            step_ms[name] += (times[name, False] * calls * 2 / 3 + times[name, True] * calls / 3) * LAYERS / 1000
        moved = linear.weight.numel() * 1.5  # half a byte in, one out (the absmax tables are 1/64 of that)
        print(f"  ({out_features:>5}, {in_features:>5}) (x{calls}/layer) {times['two-step', False]:11.0f} "
              f"{times['two-step', True]:13.0f} {times['triton', False]:10.0f} {times['triton', True]:13.0f} "
              f"{moved / times['triton', False] / 1e3:12.0f}  {str(identical):<24}  {error:.4f}")
    print(f"per training step ({LAYERS} layers): NF4 -> e4m3 rebuilds two-step {step_ms['two-step']:.1f} ms, "
          f"triton {step_ms['triton']:.1f} ms")
    from bioreview_assets.ml.training.fp8_kernels import nf4_to_e4m3_triton

    linear = torch.nn.Linear(4096, 12288, bias=False, device="cuda", dtype=torch.bfloat16)
    nf4 = NF4FP8FrozenLinear.from_linear(linear)
    tiles = {rows: [time_us(lambda: nf4_to_e4m3_triton(nf4.weight_nf4, nf4.quant_state, nf4._offset,
                                                       nf4.weight_scale, transpose=t, block_rows=rows),
                            args.repeats) for t in (False, True)] for rows in (32, 64, 128, 256)}
    print("  (12288, 4096) by tile rows: " + ", ".join(f"{rows}: {a:.0f} / {b:.0f} us" for rows, (a, b) in tiles.items()))


if __name__ == "__main__":
    sys.exit(main())
