"""The FP8 base's Triton kernels against the eager torch code (CUDA with Triton only; CI has neither, the H200
runs it)."""

import pytest
import torch

if not torch.cuda.is_available():
    pytest.skip("the FP8 Triton kernels run only on CUDA", allow_module_level=True)
pytest.importorskip("triton")
pytest.importorskip("bitsandbytes")

from bioreview_assets.ml.training.fp8 import (  # noqa: E402
    FP8,
    FP8_MAX,
    NF4FP8FrozenLinear,
    _quantize_rowwise_eager,
)


@pytest.mark.parametrize("shape", [(192, 256), (1024, 4096), (4096, 1024), (100, 320)])
@pytest.mark.parametrize("nested", [True, False])
def test_nf4_rebuild_is_bitsandbytes_dequantisation_then_eager_quantisation_byte_for_byte(shape, nested):
    import bitsandbytes.functional as bnb_functional

    torch.manual_seed(0)
    weight = torch.randn(*shape, device="cuda", dtype=torch.bfloat16) * torch.logspace(-2, 1, shape[0],
                                                                                       device="cuda")[:, None]
    packed, state = bnb_functional.quantize_4bit(weight, blocksize=64, quant_type="nf4", compress_statistics=nested,
                                                 quant_storage=torch.uint8)
    linear = NF4FP8FrozenLinear(packed, state, None)
    dequantised = bnb_functional.dequantize_4bit(packed, state)
    q_ref, scale_ref = _quantize_rowwise_eager(dequantised)
    torch.testing.assert_close(linear.weight_scale, scale_ref, rtol=0, atol=0)
    assert torch.equal(linear.fp8_weight().view(torch.uint8), q_ref.view(torch.uint8))
    transposed = linear.fp8_weight(transpose=True)
    assert transposed.shape == (shape[1], shape[0]) and transposed.is_contiguous()
    assert torch.equal(transposed.view(torch.uint8), q_ref.t().contiguous().view(torch.uint8))


def test_nf4_fp8_linear_on_cuda_matches_the_linear_on_its_nf4_weight():
    torch.manual_seed(0)
    dense = torch.nn.Linear(4096, 1024, bias=True, device="cuda", dtype=torch.bfloat16)
    linear = NF4FP8FrozenLinear.from_linear(dense)
    reference = torch.nn.Linear(4096, 1024, bias=True, device="cuda", dtype=torch.bfloat16)
    with torch.no_grad():
        reference.weight.copy_(linear.dequantized_weight())
        reference.bias.copy_(dense.bias)
    x = torch.randn(2, 512, 4096, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y, y_ref = linear(x), reference(x_ref)
    grad = torch.randn_like(y)
    y.backward(grad)
    y_ref.backward(grad)
    for ours, theirs in ((y, y_ref), (x.grad, x_ref.grad)):
        error = ((ours.float() - theirs.float()).norm() / theirs.float().norm()).item()
        assert 0 < error < 0.06  # e4m3's rounding of the NF4 weight and the activations, no more
    assert linear.fp8_weight().dtype == FP8 and float(linear.fp8_weight().float().abs().max()) <= FP8_MAX
