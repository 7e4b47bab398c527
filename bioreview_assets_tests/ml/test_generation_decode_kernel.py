"""The Triton flash-decoding kernel against fp32 attention (CUDA with Triton only; CI has neither, the H200 runs it)."""

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("the flash-decoding kernel runs only on CUDA", allow_module_level=True)
pytest.importorskip("triton")

from bioreview_assets.ml.generation.decode_kernel import (  # noqa: E402
    default_splits,
    packed_decode_attention,
    remember_sm_count,
)


def _case(batch=5, kv_heads=2, groups=4, length=700, dim=128, seed=0):
    generator = torch.Generator(device="cuda").manual_seed(seed)
    shape = dict(device="cuda", dtype=torch.bfloat16, generator=generator)
    query = torch.randn(batch, kv_heads, groups, dim, **shape)
    key = torch.randn(batch, kv_heads, length, dim, **shape)
    value = torch.randn(batch, kv_heads, length, dim, **shape)
    keep = torch.zeros(batch, length, dtype=torch.bool, device="cuda")
    for row in range(batch):  # left padding and a filled length that differ by row, as in a static cache
        keep[row, 37 * row : length - 53 * row] = True
    return query, key, value, keep


def _reference(query, key, value, keep):
    return torch.nn.functional.scaled_dot_product_attention(
        query.float(), key.float(), value.float(), attn_mask=keep[:, None, None, :])


@pytest.mark.parametrize("splits", [1, 3, 8])
@pytest.mark.parametrize("block", [32, 64])
def test_kernel_matches_fp32_attention_over_the_kept_positions(splits, block):
    query, key, value, keep = _case()
    out = packed_decode_attention(query, key, value, keep, splits=splits, block=block)
    assert out.shape == query.shape and out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), _reference(query, key, value, keep), atol=2e-2, rtol=2e-2)


def test_positions_outside_the_mask_never_change_the_result():
    query, key, value, keep = _case()
    poisoned_key, poisoned_value = key.clone(), value.clone()
    # Finite garbage (a static cache's unfilled and padded positions hold finite values): it must get weight 0.
    poisoned_key[~keep[:, None, :, None].expand_as(key)] = 1e4
    poisoned_value[~keep[:, None, :, None].expand_as(value)] = -1e4
    out = packed_decode_attention(query, poisoned_key, poisoned_value, keep, splits=4)
    assert torch.equal(out, packed_decode_attention(query, key, value, keep, splits=4))


def test_a_hole_in_the_mask_and_groups_of_other_sizes():
    query, key, value, keep = _case(groups=8, dim=64, length=400)
    keep[:, 40:100] = False  # whole blocks with nothing kept inside the kept range of rows 0 and 1
    out = packed_decode_attention(query, key, value, keep, splits=2, block=32)
    torch.testing.assert_close(out.float(), _reference(query, key, value, keep), atol=2e-2, rtol=2e-2)


def test_a_mask_expanded_over_the_batch_is_read_by_its_own_strides():
    query, key, value, _ = _case()
    shared = torch.zeros(key.shape[2], dtype=torch.bool, device="cuda")
    shared[100:650] = True
    keep = shared.expand(query.shape[0], -1)  # stride 0 over rows
    out = packed_decode_attention(query, key, value, keep, splits=2)
    torch.testing.assert_close(out.float(), _reference(query, key, value, keep.contiguous()), atol=2e-2, rtol=2e-2)


@pytest.mark.parametrize("splits", [1, 4])
def test_a_row_with_nothing_kept_gives_zeros(splits):
    query, key, value, keep = _case()
    keep[2] = False
    out = packed_decode_attention(query, key, value, keep, splits=splits)
    assert torch.equal(out[2], torch.zeros_like(out[2]))
    torch.testing.assert_close(out[3].float(), _reference(query, key, value, keep)[3], atol=2e-2, rtol=2e-2)


def test_kernel_compiles_into_one_cuda_graph():
    query, key, value, keep = _case()
    remember_sm_count(query.device)
    compiled = torch.compile(packed_decode_attention, mode="reduce-overhead", fullgraph=True)
    for _ in range(3):
        out = compiled(query, key, value, keep)
    torch.testing.assert_close(out.float(), _reference(query, key, value, keep), atol=2e-2, rtol=2e-2)


def test_default_splits_fill_the_gpu_without_tiny_shares():
    assert default_splits(128, 8, 5096, sms=132) == 1  # 1,024 programs already
    assert default_splits(1, 8, 5096, sms=132) == 9  # capped by 512 positions a share
    assert default_splits(1, 8, 100_000, sms=132) == 32
