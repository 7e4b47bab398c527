"""The nf4-int8 base's products at a 16k-token step's shapes against bf16 and the nf4 path they replace.

Per Qwen3-8B linear shape (out, in), microseconds of: the bf16 GEMM alone (what an unquantised base pays), nf4's call
(bitsandbytes dequantisation + bf16 GEMM, quantization: nf4), torch._int_mm alone (the INT8 tensor-core rate: an
A100's and an H100/H200's INT8 run at twice their bf16 rate), and our NF4Int8FrozenLinear forward and input gradient
(ml/training/int8.py: NF4 -> int8 rebuild, activation rounding, int8 GEMM, rescale), plus their parts, so the GPU
session sees where the INT8 path stands against nf4 and what a fused rebuild/rescale kernel could still take off.
Then the estimate per training step (36 layers; forward, recompute and input gradient of each linear).

Run (CUDA):  python3 benchmarks/int8_matmul.py            (--tokens 16384 by default)
CPU smoke:   python3 benchmarks/int8_matmul.py --tiny     (wall-clock timing of the same calls, tiny shapes)
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# Qwen3-8B's linears per layer by (out, in): q/o 4096x4096, k/v 1024x4096, gate/up 12288x4096, down 4096x12288.
SHAPES = {(4096, 4096): 2, (1024, 4096): 2, (12288, 4096): 2, (4096, 12288): 1}
TINY_SHAPES = {(128, 64): 2, (64, 128): 1}
LAYERS = 36


def timer(cuda: bool):
    if cuda:
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from cuda_timing import time_us

        return time_us

    def wall_us(fn, repeats: int) -> float:
        fn()
        samples = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            samples.append((time.perf_counter() - started) * 1e6)
        return statistics.median(samples)

    return wall_us


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokens", type=int, default=None, help="rows per call (16384; 64 with --tiny)")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--tiny", action="store_true", help="tiny shapes (CPU smoke test)")
    args = parser.parse_args()

    import bitsandbytes as bnb
    import torch

    from bioreview_assets.ml.training import int8

    cuda = torch.cuda.is_available() and not args.tiny
    device, dtype = ("cuda", torch.bfloat16) if cuda else ("cpu", torch.float32)
    tokens = args.tokens or (64 if args.tiny else 16384)
    shapes = TINY_SHAPES if args.tiny else SHAPES
    time_us = timer(cuda)
    print(f"{torch.cuda.get_device_name() if cuda else 'CPU'}, torch {torch.__version__}, {tokens} token rows, "
          f"{dtype}, median of {args.repeats}")
    header = ("(out, in)", "bf16 gemm", "nf4 fwd", "int_mm", "int8 fwd", "int8 dgrad", "rebuild", "rebuild^T",
              "quant x", "int8/bf16", "int8 fwd/nf4")
    print(" ".join(f"{h:>12}" for h in header))
    step = {"nf4": 0.0, "int8": 0.0, "bf16": 0.0}
    for (out_features, in_features), count in shapes.items():
        torch.manual_seed(0)
        dense = torch.nn.Linear(in_features, out_features, bias=False, device=device, dtype=dtype)
        linear4bit = bnb.nn.Linear4bit(in_features, out_features, bias=False, compute_dtype=dtype, quant_type="nf4",
                                       compress_statistics=True, quant_storage=torch.uint8, device="meta")
        linear4bit.weight = bnb.nn.Params4bit(dense.weight.data.cpu(), requires_grad=False, quant_type="nf4",
                                              compress_statistics=True, quant_storage=torch.uint8,
                                              module=linear4bit).to(device)
        int8_linear = int8.NF4Int8FrozenLinear.from_linear(linear4bit)
        x = torch.randn(tokens, in_features, device=device, dtype=dtype)
        grad = torch.randn(tokens, out_features, device=device, dtype=dtype)
        q_x, _ = int8.quantize_rowwise_int8(x)
        q_w = int8_linear.int8_weight()

        def int8_forward():
            int8._last_input.clear()  # a fresh input each call, as each projection's first read is
            return int8._FrozenNF4Int8Matmul.forward(_Ctx(), x, int8_linear)

        def int8_dgrad():
            ctx = _Ctx()
            ctx.linear, ctx.input_shape = int8_linear, x.shape
            return int8._FrozenNF4Int8Matmul.backward(ctx, grad)

        with torch.no_grad():
            times = {
                "bf16": time_us(lambda: torch.nn.functional.linear(x, dense.weight), args.repeats),
                "nf4": time_us(lambda: linear4bit(x), args.repeats),
                "int_mm": time_us(lambda: torch._int_mm(q_x, q_w.t()), args.repeats),
                "int8": time_us(int8_forward, args.repeats),
                "dgrad": time_us(int8_dgrad, args.repeats),
                "rebuild": time_us(lambda: int8_linear.int8_weight(), args.repeats),
                "rebuild_t": time_us(lambda: int8_linear.int8_weight(transpose=True), args.repeats),
                "quant": time_us(lambda: int8.quantize_rowwise_int8(x), args.repeats),
            }
        print(" ".join(f"{v:>12}" for v in (
            f"({out_features}, {in_features})", *(f"{times[k]:.0f}" for k in
                                                  ("bf16", "nf4", "int_mm", "int8", "dgrad", "rebuild",
                                                   "rebuild_t", "quant")),
            f"{times['int_mm'] / times['bf16']:.2f}", f"{times['int8'] / times['nf4']:.2f}")))
        # Per step: forward + recompute + input gradient of every linear (nf4's backward is a dequantise + GEMM too).
        step["bf16"] += 3 * count * times["bf16"]
        step["nf4"] += 3 * count * times["nf4"]
        step["int8"] += count * (2 * times["int8"] + times["dgrad"])
    layers = 2 if args.tiny else LAYERS
    print(f"per step ({layers} layers, frozen-base products only): bf16 {step['bf16'] * layers / 1e3:.0f} ms, "
          f"nf4 {step['nf4'] * layers / 1e3:.0f} ms, nf4-int8 {step['int8'] * layers / 1e3:.0f} ms")
    return 0


class _Ctx:
    """A stand-in for autograd's ctx: the Function's forward/backward called directly, outside autograd."""


if __name__ == "__main__":
    raise SystemExit(main())
