"""Triton kernels for the FP8 base (CUDA only; fp8.py imports this module on a GPU): row-wise e4m3 quantisation,
the weight transpose, and the e4m3 weight rebuilt from NF4 (quantization: nf4-fp8).

Why a hand kernel: torch.compile's fused form of the eager quantisation (fp8._quantize_rowwise_eager) is a looped
reduction that reads each row twice; in a 16k-token step it ran about 540 times and took 180 ms of 1.76 s on an
H200 (benchmarks/results/train_peers_h200.txt). One program per row here loads the row once into registers (rows
are 1,024-12,288 values: at most 48 KiB), takes its absmax and writes the e4m3 values and the fp32 scale, so the
kernel moves 3 bytes per bf16 value instead of 5. benchmarks/fp8_kernels.py measures both and checks agreement.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.language.extra import libdevice

from .fp8_format import FP8, FP8_MAX


@triton.jit
def _rowwise_kernel(x_ptr, column_scale_ptr, q_ptr, scale_ptr, n_columns, x_row_stride, q_row_stride,
                    HAS_COLUMN_SCALE: tl.constexpr, BLOCK: tl.constexpr, MAX: tl.constexpr,
                    RECIPROCAL_MAX: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    columns = tl.arange(0, BLOCK)
    inside = columns < n_columns
    x = tl.load(x_ptr + row * x_row_stride + columns, mask=inside, other=0.0).to(tl.float32)
    if HAS_COLUMN_SCALE:
        x = x * tl.load(column_scale_ptr + columns, mask=inside, other=0.0)
    # The eager form's operations as torch runs them: a division by the Python scalar 448 is a product with its fp32 reciprocal
    # (ATen's div by a CPU scalar), the division by the scale tensor an IEEE division (div_rn; Triton's `/` on
    # fp32 is the approximate one).
    scale = tl.maximum(tl.max(tl.abs(x), axis=0), 1e-12) * RECIPROCAL_MAX
    q = tl.minimum(tl.maximum(tl.math.div_rn(x, scale), -MAX), MAX)
    tl.store(q_ptr + row * q_row_stride + columns, q.to(q_ptr.dtype.element_ty), mask=inside)
    tl.store(scale_ptr + row, scale)


def quantize_rowwise_triton(x: torch.Tensor, column_scale: torch.Tensor | None = None
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """(e4m3 (rows x n), fp32 scale (rows x 1)) of a 2-D CUDA tensor, each row scaled by its absmax / 448.

    column_scale: an optional fp32 factor per column (1 x n), applied before the absmax (the backward's W scale).
    """
    if x.dim() != 2 or x.stride(-1) != 1:
        raise ValueError(f"quantize_rowwise_triton needs a 2-D tensor with contiguous rows, got shape "
                         f"{tuple(x.shape)} strides {x.stride()}")
    rows, n = x.shape
    q = torch.empty((rows, n), dtype=FP8, device=x.device)
    scale = torch.empty((rows, 1), dtype=torch.float32, device=x.device)
    if rows == 0:
        return q, scale
    if column_scale is not None:
        column_scale = column_scale.reshape(-1).to(torch.float32).contiguous()
        if column_scale.numel() != n:
            raise ValueError(f"column_scale has {column_scale.numel()} values for rows of {n}")
    block = triton.next_power_of_2(n)
    # Enough threads that each holds at most 32 fp32 values of its row.
    warps = max(1, min(32, block // 1024)) if block >= 1024 else 1
    _rowwise_kernel[(rows,)](x, column_scale if column_scale is not None else x, q, scale, n, x.stride(0),
                             q.stride(0), HAS_COLUMN_SCALE=column_scale is not None, BLOCK=block, MAX=FP8_MAX,
                             RECIPROCAL_MAX=1.0 / FP8_MAX,
                             num_warps=warps)
    return q, scale


@triton.jit
def _transpose_kernel(source_ptr, target_ptr, rows, columns, BLOCK: tl.constexpr):
    tile_rows = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    tile_columns = tl.program_id(1).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = (tile_rows[:, None] < rows) & (tile_columns[None, :] < columns)
    tile = tl.load(source_ptr + tile_rows[:, None] * columns + tile_columns[None, :], mask=inside)
    tl.store(target_ptr + tile_columns[:, None] * rows + tile_rows[None, :], tl.trans(tile), mask=tl.trans(inside))


def transpose_triton(x: torch.Tensor) -> torch.Tensor:
    """x.t().contiguous() of a contiguous 2-D CUDA tensor in square tiles.

    torch's strided copy of a 1-byte dtype reads the source with a stride of a whole row: the FP8 weights' transposed
    copies (one per linear per backward) took 40 ms of a step for about 4 ms of memory traffic.
    """
    if x.dim() != 2 or not x.is_contiguous():
        raise ValueError(f"transpose_triton needs a contiguous 2-D tensor, got shape {tuple(x.shape)}")
    rows, columns = x.shape
    out = torch.empty((columns, rows), dtype=x.dtype, device=x.device)
    block = 64
    _transpose_kernel[(triton.cdiv(rows, block), triton.cdiv(columns, block))](x, out, rows, columns, BLOCK=block)
    return out


@triton.jit
def _nf4_to_e4m3_kernel(packed_ptr, absmax_ptr, absmax2_ptr, code2_ptr, offset, code_ptr, scale_ptr, out_ptr,
                        rows, columns, NESTED: tl.constexpr, BLOCKSIZE: tl.constexpr, BLOCKSIZE2: tl.constexpr,
                        TO_BF16: tl.constexpr, TO_FP16: tl.constexpr, TRANSPOSE: tl.constexpr,
                        BLOCK_ROWS: tl.constexpr, MAX: tl.constexpr):
    # A tile of BLOCK_ROWS weight rows x one NF4 block of columns (columns is a multiple of BLOCKSIZE), so each tile
    # row has one absmax.
    tile_rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    first_column = tl.program_id(1) * BLOCKSIZE
    row_inside = tile_rows < rows
    block = (tile_rows * columns + first_column) // BLOCKSIZE
    if NESTED:
        # Double quantisation: each block's absmax is an 8-bit code with one fp32 absmax per BLOCKSIZE2 blocks and
        # a global offset; rounded as bitsandbytes computes it (a product, then a sum: no fused multiply-add).
        absmax_code = tl.load(absmax_ptr + block, mask=row_inside, other=0).to(tl.int32)
        absmax = libdevice.add_rn(libdevice.mul_rn(tl.load(code2_ptr + absmax_code),
                                                   tl.load(absmax2_ptr + block // BLOCKSIZE2, mask=row_inside,
                                                           other=0.0)), offset)
    else:
        absmax = tl.load(absmax_ptr + block, mask=row_inside, other=0.0)
    # bitsandbytes packs two weights a byte in row-major order, the first in the high nibble.
    pairs = tl.arange(0, BLOCKSIZE // 2)
    byte = tl.load(packed_ptr + (tile_rows[:, None] * columns + first_column) // 2 + pairs[None, :],
                   mask=row_inside[:, None], other=0).to(tl.int32)
    values = tl.interleave(tl.load(code_ptr + (byte >> 4)), tl.load(code_ptr + (byte & 15)))
    weight = libdevice.mul_rn(values, tl.broadcast_to(absmax[:, None], (BLOCK_ROWS, BLOCKSIZE)))
    if TO_BF16:  # the dequantised weight in the compute dtype, as bitsandbytes writes it
        weight = weight.to(tl.bfloat16).to(tl.float32)
    if TO_FP16:
        weight = weight.to(tl.float16).to(tl.float32)
    scale = tl.load(scale_ptr + tile_rows, mask=row_inside, other=1.0)
    q = tl.minimum(tl.maximum(tl.math.div_rn(weight, scale[:, None]), -MAX), MAX).to(out_ptr.dtype.element_ty)
    tile_columns = first_column + tl.arange(0, BLOCKSIZE)
    inside = row_inside[:, None] & (tile_columns[None, :] < columns)
    if TRANSPOSE:
        tl.store(out_ptr + tile_columns[:, None] * rows + tile_rows[None, :], tl.trans(q), mask=tl.trans(inside))
    else:
        tl.store(out_ptr + tile_rows[:, None] * columns + tile_columns[None, :], q, mask=inside)


def nf4_to_e4m3_triton(packed: torch.Tensor, quant_state, offset: float, row_scale: torch.Tensor, *,
                       transpose: bool = False, block_rows: int = 64) -> torch.Tensor:
    """The e4m3 bytes of an NF4 weight divided by its fp32 row scales: (out, in), or (in, out) if transpose.

    block_rows: rows per tile. 64 measured 8-15% faster per weight than 128 on an H200 and 1.2% more tokens/s in a
    Qwen3-8B training step (benchmarks/results/train_nf4fp8_h200.txt).

    One pass: reads half a byte a weight (and the small absmax tables), writes one. Byte for byte what
    dequantize_4bit followed by the eager quantisation with the same scales gives (benchmarks/fp8_kernels.py and
    the GPU test check it).
    """
    if quant_state.quant_type != "nf4":
        raise ValueError(f"nf4_to_e4m3_triton: expected an NF4 quant state, got {quant_state.quant_type!r}")
    rows, columns = quant_state.shape
    if columns % quant_state.blocksize or rows * columns >= 2**31:
        raise ValueError(f"nf4_to_e4m3_triton: a ({rows}, {columns}) weight needs in_features a multiple of the NF4 "
                         f"block size {quant_state.blocksize} and fewer than 2**31 weights")
    out = torch.empty((columns, rows) if transpose else (rows, columns), dtype=FP8, device=packed.device)
    nested = bool(quant_state.nested)
    absmax2 = quant_state.state2.absmax if nested else quant_state.absmax
    code2 = quant_state.state2.code if nested else quant_state.code
    _nf4_to_e4m3_kernel[(triton.cdiv(rows, block_rows), columns // quant_state.blocksize)](
        packed, quant_state.absmax, absmax2, code2, offset, quant_state.code, row_scale, out, rows, columns,
        NESTED=nested, BLOCKSIZE=quant_state.blocksize,
        BLOCKSIZE2=quant_state.state2.blocksize if nested else 1,
        TO_BF16=quant_state.dtype == torch.bfloat16, TO_FP16=quant_state.dtype == torch.float16,
        TRANSPOSE=transpose, BLOCK_ROWS=block_rows, MAX=FP8_MAX,
    )
    return out
