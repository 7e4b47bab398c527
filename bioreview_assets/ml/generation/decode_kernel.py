"""Flash-decoding attention for one-token queries over a static KV cache (Triton; CUDA only).

Why a hand kernel: in compiled decode steps at batch 128 (Qwen3-8B shape, cache of 5,096 positions) SDPA's cuDNN
kernel took 49.5 of 55.8 ms of GPU time per step, reading the whole static cache, unfilled positions included, at
about 1.9 TB/s (benchmarks/results/gen_compiled_h200.txt). This kernel reads K/V only between the first and the
last position the mask keeps (the filled part of a row: on average 4,596 of 5,096 positions over 1,000 new
tokens), a group's query heads share one read of their K/V head (packed GQA), and the length is split across
programs when batch x heads alone cannot fill the GPU. benchmarks/decode_attention.py measures it beside SDPA.
Measured on the H200 in compiled decode steps: 23.0 ms/step at about 3.8 TB/s, decode 32.6 ms/step against 58.6
(benchmarks/results/gen_compiled_h200.txt).

Numerics: scores and the softmax in fp32 (exp2 with the scale folded into log2 units), probabilities rounded to the
cache's dtype for the P @ V product, as flash attention does; partial results of the splits are combined by their
log-sum-exp in fp32. Outputs differ from SDPA's by rounding (the benchmark prints the largest difference).
"""

from __future__ import annotations

import math

import torch
import triton
import triton.language as tl
from torch.library import triton_op, wrap_triton

LOG2_E = 1.4426950408889634


@triton.jit
def _decode_kernel(q_ptr, k_ptr, v_ptr, keep_ptr, first_ptr, end_ptr, out_ptr, lse_ptr, scale_log2,
                   q_stride_b, q_stride_h, q_stride_g, k_stride_b, k_stride_h, k_stride_l,
                   v_stride_b, v_stride_h, v_stride_l, keep_stride_b, keep_stride_l,
                   kv_heads, groups, splits,
                   GROUPS_PADDED: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK: tl.constexpr):
    row_head = tl.program_id(0)
    split = tl.program_id(1)
    row = (row_head // kv_heads).to(tl.int64)
    head = (row_head % kv_heads).to(tl.int64)
    # This split's share of the kept range [first, end), in whole blocks.
    first = (tl.load(first_ptr + row) // BLOCK) * BLOCK
    end = tl.load(end_ptr + row)
    blocks_per_split = tl.cdiv(tl.cdiv(tl.maximum(end - first, 0), BLOCK), splits)  # 0 for a row with none kept
    start = first + split * blocks_per_split * BLOCK
    stop = tl.minimum(start + blocks_per_split * BLOCK, end)

    group = tl.arange(0, GROUPS_PADDED)
    dim = tl.arange(0, HEAD_DIM)
    q = tl.load(q_ptr + row * q_stride_b + head * q_stride_h + group[:, None] * q_stride_g + dim[None, :],
                mask=group[:, None] < groups, other=0.0)
    k_base = k_ptr + row * k_stride_b + head * k_stride_h
    v_base = v_ptr + row * v_stride_b + head * v_stride_h
    running_max = tl.full([GROUPS_PADDED], float("-inf"), tl.float32)
    running_sum = tl.zeros([GROUPS_PADDED], tl.float32)
    acc = tl.zeros([GROUPS_PADDED, HEAD_DIM], tl.float32)
    # Inductor passes Python floats as fp64 tensors, while its mutation analysis traces them as plain floats (which
    # have no .to: it then assumes every input is mutated); tl.full takes both.
    scale = tl.full([], scale_log2, tl.float32)
    for block_start in range(start, stop, BLOCK):
        position = block_start + tl.arange(0, BLOCK)
        inside = position < stop
        keep = tl.load(keep_ptr + row * keep_stride_b + position * keep_stride_l, mask=inside, other=0) != 0
        k = tl.load(k_base + position[:, None] * k_stride_l + dim[None, :], mask=inside[:, None], other=0.0)
        scores = tl.dot(q, tl.trans(k)) * scale
        scores = tl.where(keep[None, :], scores, float("-inf"))
        new_max = tl.maximum(running_max, tl.max(scores, 1))
        # A block with nothing kept leaves new_max at -inf: subtract 0 then, so exp2 gives 0 and no NaN.
        shift = tl.where(new_max == float("-inf"), 0.0, new_max)
        correction = tl.exp2(running_max - shift)
        p = tl.exp2(scores - shift[:, None])
        running_sum = running_sum * correction + tl.sum(p, 1)
        v = tl.load(v_base + position[:, None] * v_stride_l + dim[None, :], mask=inside[:, None], other=0.0)
        acc = acc * correction[:, None] + tl.dot(p.to(v.dtype), v)
        running_max = new_max
    empty = running_sum == 0.0
    out = acc / tl.where(empty, 1.0, running_sum)[:, None]
    lse = tl.where(empty, float("-inf"), running_max + tl.log2(tl.where(empty, 1.0, running_sum)))
    slot = row_head * splits + split
    store = group < groups
    tl.store(out_ptr + (slot * groups + group[:, None]) * HEAD_DIM + dim[None, :], out, mask=store[:, None])
    tl.store(lse_ptr + slot * groups + group, lse, mask=store)


_SM_COUNTS: dict[int, int] = {}


def remember_sm_count(device: torch.device) -> int:
    """The device's SM count, read once outside compiled code (compiled decode steps then only look it up)."""
    index = torch.device(device).index
    index = torch.cuda.current_device() if index is None else index
    if index not in _SM_COUNTS:
        _SM_COUNTS[index] = torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNTS[index]


def default_splits(batch: int, kv_heads: int, length: int, sms: int) -> int:
    """Splits of the cache length per (row, K/V head): enough programs for two per SM, each at least 512 positions."""
    return max(1, min(-(-2 * sms // (batch * kv_heads)), length // 512, 32))


@triton_op("bioreview::decode_attention", mutates_args={})
def decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, keep: torch.Tensor,
                     scale: float, splits: int, block: int, warps: int, stages: int) -> torch.Tensor:
    """Attention of packed one-token queries (batch, kv_heads, groups, dim) over K/V (batch, kv_heads, length,
    dim) where keep (batch, length, bool) is True; returns (batch, kv_heads, groups, dim) in the query's dtype
    (zeros for a row with nothing kept, where SDPA gives NaN)."""
    batch, kv_heads, groups, head_dim = query.shape
    length = key.shape[2]
    positions = torch.arange(length, device=keep.device, dtype=torch.int32)
    # The kept range of each row: blocks wholly before its first or after its last kept position are never read.
    first = torch.where(keep, positions, length).amin(dim=1).to(torch.int32)
    end = torch.where(keep, positions + 1, 0).amax(dim=1).to(torch.int32)
    partial = torch.empty((batch * kv_heads, splits, groups, head_dim), device=query.device, dtype=torch.float32)
    lse = torch.empty((batch * kv_heads, splits, groups), device=query.device, dtype=torch.float32)
    # uint8, not bool: inductor cannot lower a bool -> uint8 view, and this copy is 1 byte per position. Its own
    # strides are passed: a copy of an expanded mask (stride 0) is laid out anew.
    keep_bytes = keep.to(torch.uint8)
    wrap_triton(_decode_kernel)[(batch * kv_heads, splits)](
        query, key, value, keep_bytes, first, end, partial, lse, scale * LOG2_E,
        query.stride(0), query.stride(1), query.stride(2), key.stride(0), key.stride(1), key.stride(2),
        value.stride(0), value.stride(1), value.stride(2), keep_bytes.stride(0), keep_bytes.stride(1),
        kv_heads, groups, splits,
        GROUPS_PADDED=max(16, triton.next_power_of_2(groups)), HEAD_DIM=head_dim, BLOCK=block,
        num_warps=warps, num_stages=stages,
    )
    if splits == 1:
        combined = partial[:, 0]
    else:  # each split's result weighted by its share of the softmax mass (lse is in log2 units)
        # A row with nothing kept has -inf everywhere: NaN weights, set to 0 (its result is 0, as with one split).
        weights = torch.softmax(lse * math.log(2.0), dim=1).nan_to_num(0.0)
        combined = (weights.unsqueeze(-1) * partial).sum(dim=1)
    return combined.reshape(batch, kv_heads, groups, head_dim).to(query.dtype)


def packed_decode_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, keep: torch.Tensor,
                            scale: float | None = None, *, splits: int | None = None, block: int = 32,
                            warps: int = 4, stages: int = 3) -> torch.Tensor:
    """decode_attention with checked inputs and the default split count; see decode_attention."""
    if query.dim() != 4 or key.dim() != 4 or key.shape != value.shape or keep.dim() != 2:
        raise ValueError(f"packed_decode_attention needs query (batch, kv_heads, groups, dim), K/V (batch, kv_heads, "
                         f"length, dim) and keep (batch, length); got {tuple(query.shape)}, {tuple(key.shape)}, "
                         f"{tuple(value.shape)}, {tuple(keep.shape)}")
    if keep.dtype != torch.bool:
        raise ValueError(f"keep must be a boolean mask, got {keep.dtype}")
    head_dim = query.shape[-1]
    if head_dim not in (64, 128, 256) or query.stride(-1) != 1 or key.stride(-1) != 1 or value.stride(-1) != 1:
        raise ValueError(f"packed_decode_attention needs head_dim 64/128/256 with contiguous last dims, got "
                         f"{head_dim}, strides {query.stride()}, {key.stride()}, {value.stride()}")
    if splits is None:
        sms = _SM_COUNTS.get(query.device.index)
        if sms is None:
            raise RuntimeError("call remember_sm_count(device) before packed_decode_attention (outside compiled code)")
        splits = default_splits(query.shape[0], query.shape[1], key.shape[2], sms)
    return decode_attention(query, key, value, keep, scale if scale is not None else head_dim ** -0.5, splits,
                            block, warps, stages)
