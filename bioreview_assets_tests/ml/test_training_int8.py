"""quantization: nf4-int8 (ml/training/int8.py) on CPU, through torch._int_mm's reference kernel: the GPU's maths."""

from __future__ import annotations


import pytest
import torch

from bioreview_assets.store.records import AdapterMeta
from bioreview_assets.ml.training.int8 import (
    Int8Unsupported,
    NF4Int8FrozenLinear,
    check_int8_device,
    int8_matmul,
    quantize_rowwise_int8,
)

from bioreview_assets_tests.ml.test_training import (  # noqa: F401
    CORPUS_HASH,
    PROMPT_HASH,
    corpus,
    tiny_cache,
    tiny_cfg,
    tiny_env,
)
from bioreview_assets_tests.ml.test_training_fp8 import relative_error

# Relative Frobenius error of the int8 products against fp32 on the same (NF4) weight. int8 with row-wise absmax
# scales rounds each value to 1/254 of its row's largest; on Gaussian rows of 256 that is about 1% per product.
INT8_TOLERANCE = 0.02


def test_rowwise_int8_keeps_each_rows_scale_and_the_product_is_exact_integer_arithmetic():
    x = torch.randn(64, 256) * torch.logspace(-3, 3, 64)[:, None]  # rows six decades apart
    q, scale = quantize_rowwise_int8(x)
    assert q.dtype == torch.int8 and scale.shape == (64, 1) and int(q.abs().max()) == 127
    for row, original in zip(q.float() * scale, x):
        assert relative_error(row, original) < 0.015  # a step of absmax/127: ~0.8% rms on Gaussian rows
    # int8_matmul is the product of the two rounded operands, exactly (int32 accumulation), scaled per row/column.
    w = torch.randn(48, 256)
    q_w, scale_w = quantize_rowwise_int8(w)
    expected = (q.double() * scale.double()) @ (q_w.double() * scale_w.double()).t()
    got = int8_matmul(q, scale, q_w.t(), scale_w.t(), torch.float32)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=0)


def test_int8_matmul_in_row_slices_gives_the_same_product(monkeypatch):
    from bioreview_assets.ml.training import int8

    q, scale = quantize_rowwise_int8(torch.randn(50, 64))
    q_w, scale_w = quantize_rowwise_int8(torch.randn(24, 64))
    whole = int8_matmul(q, scale, q_w.t(), scale_w.t(), torch.float32)
    monkeypatch.setattr(int8, "ROWS_PER_GEMM", 16)  # 16 + 16 + 16 + 2 rows
    torch.testing.assert_close(int8_matmul(q, scale, q_w.t(), scale_w.t(), torch.float32), whole, rtol=0, atol=0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_nf4_int8_linear_forward_and_input_gradient_match_a_linear_on_the_same_nf4_weight(dtype):
    import bitsandbytes.functional as bnb_functional

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 192, bias=True)
    int8 = NF4Int8FrozenLinear.from_linear(linear)
    assert int8.weight_nf4.dtype == torch.uint8 and int8.weight_nf4.numel() == 256 * 192 // 2  # NF4 storage
    assert not list(int8.parameters())  # frozen: nothing for the optimizer
    assert int8.row_scale.shape == (192, 1) and int8.column_scale.shape == (256, 1)
    # The reference: an fp32 linear on NF4's weight (bitsandbytes' own dequantisation), so what is measured is INT8's
    # rounding alone; the original weight differs by NF4's coarser rounding on top.
    reference = torch.nn.Linear(256, 192, bias=True)
    with torch.no_grad():
        reference.weight.copy_(bnb_functional.dequantize_4bit(int8.weight_nf4, int8.quant_state))
        reference.bias.copy_(linear.bias)
    x = torch.randn(3, 40, 256, dtype=dtype, requires_grad=True)
    x_ref = x.detach().float().requires_grad_(True)
    y, y_ref = int8(x), reference(x_ref)
    assert y.shape == (3, 40, 192) and y.dtype == dtype
    assert 0 < relative_error(y, y_ref) < INT8_TOLERANCE  # quantised (not a float copy), and close
    assert relative_error(y, y_ref) < relative_error(y, linear(x_ref)) - 0.02  # it multiplies NF4's weight

    grad = torch.randn(3, 40, 192)
    y.backward(grad.to(dtype))
    y_ref.backward(grad)
    assert x.grad.dtype == dtype
    assert 0 < relative_error(x.grad, x_ref.grad) < INT8_TOLERANCE


def test_the_input_gradient_uses_the_weights_column_scales():
    # One input column of W a hundred times larger than the rest: with W's row scales in the backward's reduction
    # (or one scale per tensor) every other column would round to a few levels; per-column scales keep them.
    torch.manual_seed(0)
    linear = torch.nn.Linear(128, 64, bias=False)
    with torch.no_grad():
        linear.weight[:, 0] *= 100
    int8 = NF4Int8FrozenLinear.from_linear(linear)
    weight = int8.dequantized_weight(torch.float32)
    grad_y = torch.randn(32, 64)
    x = torch.randn(32, 128, requires_grad=True)
    int8(x).backward(grad_y)
    expected = grad_y @ weight
    assert relative_error(x.grad[:, 1:], expected[:, 1:]) < INT8_TOLERANCE  # the small columns too


def test_a_gpu_older_than_ampere_is_refused_and_an_a100_is_allowed(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (7, 5))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "Tesla T4")
    with pytest.raises(Int8Unsupported, match=r"T4.*7\.5.*quantization: nf4"):
        check_int8_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    check_int8_device("cuda:0")  # A100: the design's target
    check_int8_device("cpu")  # tests


def test_nf4_int8_is_an_nf4_stored_eight_bit_mode_everywhere_it_is_asked_about():
    from pydantic import ValidationError

    from bioreview_assets.core.quantization import EIGHT_BIT_MATMULS, FP8_MATMULS, INT8_MATMULS, NF4_STORED
    from bioreview_assets.services.publish import inference_requirements
    from bioreview_assets.ml.training.trainer import parallel_settings
    from bioreview_assets.config.model import TrainingConfig

    assert "nf4-int8" in NF4_STORED and "nf4-int8" in INT8_MATMULS and "nf4-int8" not in FP8_MATMULS
    assert "nf4-int8" in EIGHT_BIT_MATMULS
    cfg = tiny_cfg(quantization="nf4-int8", gpus=2, gradient_accumulation_steps=2)
    assert parallel_settings(cfg.training, True, ["Qwen3DecoderLayer"])["ddp_broadcast_buffers"] is False
    meta = AdapterMeta(model="m", config_hash="c", corpus_hash="k", prompt_hash="p",
                       library_versions={"transformers": "5.24.0", "peft": "0.21.2", "bitsandbytes": "0.50.2"})
    assert "bitsandbytes==0.50.2" in inference_requirements(meta, "nf4-int8")  # evaluated on the NF4 base
    with pytest.raises(ValidationError, match="quantization=nf4-int8 keeps the frozen base"):
        TrainingConfig(quantization="nf4-int8", gpus=2, strategy="fsdp", gradient_accumulation_steps=2)


def test_train_adapter_on_nf4_int8_learns_and_says_so_in_its_metadata_and_card(tiny_env, tmp_path):  # noqa: F811
    import bitsandbytes as bnb

    from bioreview_assets.ml.training import train_adapter
    from bioreview_assets.reporting.model_card import CardInputs, card_data, render_model_card

    cfg = tiny_cfg(quantization="nf4-int8", max_steps=6, gradient_accumulation_steps=1, save_steps=10, eval_subset=0)
    train, val = corpus(3, 1)
    out = tmp_path / "adapter"
    run = train_adapter(cfg, train, val, out, prompt_hash=PROMPT_HASH, corpus_hash=CORPUS_HASH)
    model = run.trainer.model
    assert sum(isinstance(m, NF4Int8FrozenLinear) for m in model.modules()) == 14  # 7 projections x 2 layers
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in model.modules())
    losses = [loss for _, loss in run.meta.train_losses]
    # It learns through the INT8 input gradients: every step lower than the one before (7.48 -> 7.37 on this CPU).
    assert len(losses) == 6 and all(b < a for a, b in zip(losses, losses[1:])) and losses[-1] < 0.99 * losses[0]
    # ... and follows the nf4 run it replaces (same NF4 weights, bf16 matmuls): the loss-curve guard in small.
    nf4 = train_adapter(tiny_cfg(quantization="nf4", max_steps=6, gradient_accumulation_steps=1, save_steps=10,
                                 eval_subset=0), train, val, tmp_path / "nf4", prompt_hash=PROMPT_HASH,
                        corpus_hash=CORPUS_HASH)
    nf4_losses = [loss for _, loss in nf4.meta.train_losses]
    assert max(abs(a - b) / b for a, b in zip(losses, nf4_losses)) < 0.01
    meta = AdapterMeta.read(out)
    assert meta.quantization == "nf4-int8"
    inputs = CardInputs(model="tiny-random", description="", base={}, training=cfg.training.model_dump(mode="json"),
                        generation={}, prompt_config={}, meta=meta)
    assert "* nf4-int8 base" in render_model_card(inputs)
    assert "qlora" in card_data(inputs).tags
