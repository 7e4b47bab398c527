"""Decode attention at batch 128 of the Qwen3-8B shape: SDPA (what compiled steps ran) vs our flash-decoding kernel.

One layer's static cache (batch x 8 K/V heads x 5,096 positions x 128, bf16: 1.3 GiB each for K and V), 32 query
heads packed 4 per K/V head, filled to several points of a 4,096-token prompt + 1,000 new tokens. Setups:
  sdpa bool      torch SDPA over the whole cache with the boolean mask (compiled decode steps until now; cuDNN)
  sdpa float     the same with an additive float mask (what a float mask costs)
  ours           decode_kernel.packed_decode_attention (reads only the kept range; default tile and split count)
  ours <config>  with --sweep: tile sizes, warps, stages and split counts
Prints per fill: microseconds per layer, the rate over the bytes each must read (whole cache for SDPA, kept range
for ours), and the largest difference from an fp32 reference on a slice of rows; then ms per decode step (36
layers) averaged over the fills, which is what a 1,000-token generation sees. Rows 0 and 1 get left padding, so the
kernel's masking of a row's first positions is exercised as well.

Run (a CUDA GPU):  python3 benchmarks/decode_attention.py [--sweep]
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cuda_timing import time_us  # noqa: E402  (benchmarks/ is the script's folder, first on sys.path)

LAYERS = 36


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--prompt", type=int, default=4096)
    parser.add_argument("--new-tokens", type=int, default=1000)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--sweep", action="store_true", help="also time other tiles, warps, stages and splits")
    parser.add_argument("--compiled", action="store_true",
                        help="also time ours under torch.compile(mode='reduce-overhead', fullgraph=True)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("decode_attention: needs a CUDA GPU (the Triton kernel runs only there)")
        return 1
    from bioreview_assets.ml.generation.decode_kernel import packed_decode_attention, remember_sm_count

    device = torch.device("cuda")
    sms = remember_sm_count(device)
    batch, kv_heads, groups, dim = args.batch, 8, 4, 128
    length = args.prompt + args.new_tokens
    torch.manual_seed(0)
    key = torch.randn(batch, kv_heads, length, dim, device=device, dtype=torch.bfloat16)
    value = torch.randn(batch, kv_heads, length, dim, device=device, dtype=torch.bfloat16)
    query = torch.randn(batch, kv_heads, groups, dim, device=device, dtype=torch.bfloat16)
    # As transformers marks its static cache: compiled graphs read these tensors in place (no copy per replay).
    torch._dynamo.mark_static_address(key)
    torch._dynamo.mark_static_address(value)
    padding = {0: 700, 1: 64}  # left padding of rows 0 and 1
    print(f"{torch.cuda.get_device_name()}, torch {torch.__version__}, {sms} SMs; batch {batch}, {kv_heads} K/V heads "
          f"x {groups} query heads, head_dim {dim}, cache {length} positions ({key.numel() * 2 / 2**30:.2f} GiB each "
          f"for K and V); median of {args.repeats}")

    configs = [("ours", {})]
    if args.sweep:
        for block in (32, 64, 128):
            for warps in (4, 8):
                for stages in (2, 3, 4):
                    configs.append((f"ours b{block} w{warps} s{stages}", dict(block=block, warps=warps, stages=stages)))
        for splits in (1, 2, 4, 8):
            configs.append((f"ours splits {splits}", dict(splits=splits)))
    fills = [args.prompt + 1 + round(i * (args.new_tokens - 1) / 4) for i in range(5)]
    per_setup: dict[str, list[float]] = {}
    for filled in fills:
        keep = torch.zeros(batch, length, dtype=torch.bool, device=device)
        keep[:, :filled] = True
        for row, pad in padding.items():
            keep[row, :pad] = False
        kept_positions = keep.sum().item()
        mask = keep[:, None, None, :]  # (batch, 1, 1, length): one mask row for every head and query
        additive = torch.zeros(mask.shape, dtype=torch.bfloat16, device=device).masked_fill(~mask, float("-inf"))
        setups = {
            "sdpa bool": (lambda: torch.nn.functional.scaled_dot_product_attention(query, key, value, attn_mask=mask),
                          batch * length),
            "sdpa float": (lambda: torch.nn.functional.scaled_dot_product_attention(query, key, value,
                                                                                    attn_mask=additive),
                           batch * length),
        }
        for name, options in configs:
            setups[name] = ((lambda options=options: packed_decode_attention(query, key, value, keep, **options)),
                            kept_positions)
        if args.compiled:
            compiled = torch.compile(lambda q, k, v, m: packed_decode_attention(q, k, v, m), mode="reduce-overhead",
                                     fullgraph=True)
            setups["ours compiled (CUDA graph)"] = ((lambda: compiled(query, key, value, keep)), kept_positions)
        # fp32 reference on a few rows (the padded ones included)
        rows = [0, 1, 2, batch - 1]
        reference = torch.nn.functional.scaled_dot_product_attention(
            query[rows].float(), key[rows].float(), value[rows].float(), attn_mask=mask[rows])
        print(f"\nfilled {filled} of {length} positions (rows 0 and 1 left-padded by {padding[0]} and {padding[1]})")
        print(f"  {'setup':28s} {'us/layer':>9s} {'TB/s':>6s} {'max |diff| vs fp32':>19s}")
        for name, (fn, positions) in setups.items():
            out = fn()
            diff = (out[rows].float() - reference).abs().max().item()
            us = time_us(fn, args.repeats)
            per_setup.setdefault(name, []).append(us)
            rate = positions * kv_heads * dim * 2 * 2 / (us * 1e-6) / 1e12
            print(f"  {name:28s} {us:9.1f} {rate:6.2f} {diff:19.2e}")
    print(f"\nper decode step ({LAYERS} layers), mean over the fills {fills}:")
    base = statistics.mean(per_setup["sdpa bool"])
    for name, samples in per_setup.items():
        mean = statistics.mean(samples)
        print(f"  {name:28s} {mean * LAYERS / 1000:7.2f} ms/step  ({base / mean:.2f}x sdpa bool)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
