"""The FP8 frozen base (ml/training/fp8.py) on CPU, through torch's reference _scaled_mm: same maths as on Hopper."""

from __future__ import annotations

import pytest
import torch

from bioreview_assets.ml.training.fp8 import (
    FP8FrozenLinear,
    FP8Unsupported,
    NF4FP8FrozenLinear,
    check_fp8_device,
    quantize_rowwise,
)
from bioreview_assets.ml.training.frozen_base import convert_base_linears_to_fp8

from bioreview_assets_tests.ml.test_training import corpus, tiny_cache, tiny_cfg, tiny_env  # noqa: F401


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach().float(), b.detach().float()
    return float((a - b).norm() / b.norm())


def test_rowwise_quantisation_keeps_each_rows_scale():
    x = torch.randn(64, 256) * torch.logspace(-3, 3, 64)[:, None]  # rows six decades apart
    q, scale = quantize_rowwise(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (64, 1)
    restored = q.float() * scale
    # e4m3 keeps 3 mantissa bits: about 3% relative error per element, in every row whatever its magnitude
    for row, original in zip(restored, x):
        assert relative_error(row, original) < 0.05


def test_fp8_linear_forward_and_input_gradient_match_the_bf16_linear():
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 192, bias=True).to(torch.bfloat16)
    fp8 = FP8FrozenLinear.from_linear(linear)
    x = torch.randn(3, 40, 256, dtype=torch.bfloat16, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)

    y, y_ref = fp8(x), linear(x_ref)
    assert y.shape == y_ref.shape == (3, 40, 192) and y.dtype == torch.bfloat16
    assert 0 < relative_error(y, y_ref) < 0.06  # quantised (not a bf16 copy), and close

    grad = torch.randn_like(y)
    y.backward(grad)
    y_ref.backward(grad)
    assert relative_error(x.grad, x_ref.grad) < 0.06
    assert not any(p.requires_grad for p in fp8.parameters())  # frozen: nothing for the optimizer
    assert fp8.weight_fp8.dtype == torch.float8_e4m3fn and fp8.weight_fp8.element_size() == 1


def test_nf4_stored_linear_multiplies_its_nf4_weight_in_fp8_and_keeps_half_a_byte_a_weight():
    import bitsandbytes.functional as bnb_functional

    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 192, bias=True)
    nf4 = NF4FP8FrozenLinear.from_linear(linear)
    assert nf4.weight_nf4.dtype == torch.uint8 and nf4.weight_nf4.numel() == 256 * 192 // 2  # two weights a byte
    assert not any(p.requires_grad for p in nf4.parameters()) and not list(nf4.parameters())  # frozen: no parameter
    # The weight it multiplies is NF4's (bitsandbytes' own dequantisation), not the original: a reference linear on
    # that weight agrees to e4m3's rounding, the original only to NF4's coarser one.
    nf4_weight = bnb_functional.dequantize_4bit(nf4.weight_nf4, nf4.quant_state)
    on_nf4 = torch.nn.Linear(256, 192, bias=True)
    with torch.no_grad():
        on_nf4.weight.copy_(nf4_weight)
        on_nf4.bias.copy_(linear.bias)
    x = torch.randn(3, 40, 256, requires_grad=True)
    x_ref = x.detach().clone().requires_grad_(True)
    y, y_ref = nf4(x), on_nf4(x_ref)
    assert y.shape == (3, 40, 192)
    assert 0 < relative_error(y, y_ref) < 0.06
    assert relative_error(y, y_ref) < relative_error(y, linear(x)) - 0.02
    grad = torch.randn_like(y)
    y.backward(grad)
    y_ref.backward(grad)
    assert relative_error(x.grad, x_ref.grad) < 0.06


def test_nf4_fp8_takes_the_bytes_of_a_bitsandbytes_nf4_linear_as_they_are():
    import bitsandbytes as bnb

    torch.manual_seed(0)
    dense = torch.nn.Linear(128, 64, bias=False)
    linear4bit = bnb.nn.Linear4bit(128, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4",
                                   compress_statistics=True, quant_storage=torch.uint8)
    linear4bit.weight = bnb.nn.Params4bit(dense.weight.data, requires_grad=False, quant_type="nf4",
                                          compress_statistics=True, quant_storage=torch.uint8,
                                          module=linear4bit)._quantize("cpu")
    nf4 = NF4FP8FrozenLinear.from_linear(linear4bit)
    assert nf4.weight_nf4.data_ptr() == linear4bit.weight.data.data_ptr()  # no copy, no second rounding
    torch.testing.assert_close(nf4.dequantized_weight(torch.float32),
                               bnb.functional.dequantize_4bit(linear4bit.weight.data, linear4bit.weight.quant_state))
    assert 0 < relative_error(nf4.dequantized_weight(torch.float32), dense.weight) < 0.15  # NF4's rounding
    with pytest.raises(ValueError, match="storage must be 'e4m3' or 'nf4'"):
        convert_base_linears_to_fp8(torch.nn.Sequential(), "int4")


def test_nf4_fp8_leaves_the_linears_the_skip_list_kept_in_bf16_and_refuses_unfit_weights():
    import bitsandbytes as bnb
    from peft import LoraConfig, get_peft_model

    class Block(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.quantized = bnb.nn.Linear4bit(128, 64, bias=False, compute_dtype=torch.float32, quant_type="nf4",
                                               compress_statistics=True, quant_storage=torch.uint8)
            self.quantized.weight = bnb.nn.Params4bit(torch.randn(64, 128), requires_grad=False, quant_type="nf4",
                                                      compress_statistics=True, quant_storage=torch.uint8,
                                                      module=self.quantized)._quantize("cpu")
            self.skipped = torch.nn.Linear(64, 64)  # what the nf4 loader leaves for quantization_skip_modules

        def forward(self, x):
            return self.skipped(self.quantized(x))

    model = get_peft_model(Block(), LoraConfig(r=2, target_modules=["quantized", "skipped"]))
    assert convert_base_linears_to_fp8(model, "nf4") == 1
    assert isinstance(model.base_model.model.quantized.base_layer, NF4FP8FrozenLinear)
    assert type(model.base_model.model.skipped.base_layer) is torch.nn.Linear  # still bf16, as asked
    assert model(torch.randn(3, 128)).shape == (3, 64)
    only_skipped = get_peft_model(torch.nn.Sequential(torch.nn.Linear(64, 64)), LoraConfig(r=2, target_modules=["0"]))
    with pytest.raises(RuntimeError, match="quantization_skip_modules keeps in bf16"):
        convert_base_linears_to_fp8(only_skipped, "nf4")
    with pytest.raises(ValueError, match="multiple of the block size 64"):
        NF4FP8FrozenLinear.from_linear(torch.nn.Linear(96, 32))


def test_fp8_bases_are_not_broadcast_by_ddp_every_step_and_nf4_fp8_publishes_its_bitsandbytes_pin():
    from bioreview_assets.services.publish import inference_requirements
    from bioreview_assets.ml.training.trainer import parallel_settings

    for quantization, broadcast in (("fp8", False), ("nf4-fp8", False), ("nf4", None)):
        cfg = tiny_cfg(quantization=quantization, gpus=2, gradient_accumulation_steps=2)
        assert parallel_settings(cfg.training, True, ["Qwen3DecoderLayer"]).get("ddp_broadcast_buffers") is broadcast
    from bioreview_assets.store.records import AdapterMeta

    meta = AdapterMeta(model="m", config_hash="c", corpus_hash="k", prompt_hash="p",
                       library_versions={"transformers": "5.24.0", "peft": "0.21.2", "bitsandbytes": "0.50.2"})
    assert "bitsandbytes==0.50.2" in inference_requirements(meta, "nf4-fp8")  # evaluated on the NF4 base
    assert "bitsandbytes" not in inference_requirements(meta, "fp8")


def test_a_gpu_without_fp8_matmuls_is_refused_with_what_to_use(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    with pytest.raises(FP8Unsupported, match=r"A100.*8\.0.*quantization: nf4"):
        check_fp8_device("cuda:0")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    check_fp8_device("cuda:0")  # Hopper passes


def test_conversion_replaces_every_lora_base_and_leaves_lora_weights_alone(tiny_env):  # noqa: F811
    from peft import LoraConfig, get_peft_model

    from bioreview_assets.ml.models import resolve_base_model
    from bioreview_assets.ml.training import load_training_model

    cfg = tiny_cfg(quantization="none", bf16=True)
    model = get_peft_model(load_training_model(cfg, resolve_base_model(cfg)),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    lora_before = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    ids = torch.tensor([list(range(5, 69))])
    with torch.no_grad():
        reference = model(input_ids=ids, labels=ids).loss

    assert convert_base_linears_to_fp8(model) == 14  # 7 projections x 2 layers
    after = {n: p for n, p in model.named_parameters() if p.requires_grad}
    assert after.keys() == lora_before.keys()
    assert all(torch.equal(after[n], lora_before[n]) and after[n].dtype == lora_before[n].dtype for n in after)
    assert type(model.get_output_embeddings()) is torch.nn.Linear  # lm_head is not a LoRA base: stays as it was

    loss = model(input_ids=ids, labels=ids).loss
    assert abs(loss.item() - reference.item()) / reference.item() < 0.02
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in after.values())  # LoRA still learns


def test_build_trainer_trains_on_an_fp8_base(tiny_env, tmp_path):  # noqa: F811
    from bioreview_assets.ml.models import load_tokenizer, resolve_base_model
    from bioreview_assets.ml.training import build_trainer, load_training_model
    from bioreview_assets.ml.training.features import featurize_rows

    cfg = tiny_cfg(quantization="fp8", max_steps=2, gradient_accumulation_steps=1, save_steps=10, eval_subset=0)
    train, _ = corpus(2, 0)
    features, _ = featurize_rows(load_tokenizer(cfg), train, cfg.training.max_length)
    trainer = build_trainer(load_training_model(cfg, resolve_base_model(cfg)), load_tokenizer(cfg), cfg.training,
                            features, [], tmp_path)
    assert sum(isinstance(m, FP8FrozenLinear) for m in trainer.model.modules()) == 14
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0


def test_build_trainer_trains_on_an_nf4_base_with_fp8_matmuls(tiny_env, tmp_path):  # noqa: F811
    import bitsandbytes as bnb

    from bioreview_assets.ml.models import load_tokenizer, resolve_base_model
    from bioreview_assets.ml.training import build_trainer, load_training_model
    from bioreview_assets.ml.training.features import featurize_rows

    cfg = tiny_cfg(quantization="nf4-fp8", max_steps=2, gradient_accumulation_steps=1, save_steps=10, eval_subset=0)
    train, _ = corpus(2, 0)
    features, _ = featurize_rows(load_tokenizer(cfg), train, cfg.training.max_length)
    base = load_training_model(cfg, resolve_base_model(cfg))
    assert sum(isinstance(m, bnb.nn.Linear4bit) for m in base.modules()) == 14  # loaded as nf4 loads it
    trainer = build_trainer(base, load_tokenizer(cfg), cfg.training, features, [], tmp_path)
    assert sum(isinstance(m, NF4FP8FrozenLinear) for m in trainer.model.modules()) == 14
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in trainer.model.modules())
    lora = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    result = trainer.train()
    assert result.global_step == 2 and result.training_loss > 0
    moved = [n for n, p in trainer.model.named_parameters() if p.requires_grad and not torch.equal(p.cpu(), lora[n])]
    assert moved  # the LoRA weights learnt through the FP8 input gradients


def test_fp8_bases_are_refused_under_fsdp():
    from pydantic import ValidationError

    from bioreview_assets.config.model import TrainingConfig

    for quantization in ("fp8", "nf4-fp8"):
        with pytest.raises(ValidationError, match=f"quantization={quantization} keeps the frozen base"):
            TrainingConfig(quantization=quantization, gpus=2, strategy="fsdp", gradient_accumulation_steps=2)


def test_projections_reading_one_input_quantise_it_once(monkeypatch):
    from bioreview_assets.ml.training import fp8

    calls = []
    real = fp8.quantize_rowwise
    monkeypatch.setattr(fp8, "quantize_rowwise", lambda x: calls.append(x.shape) or real(x))
    fp8._last_input.clear()
    q, k, v = (FP8FrozenLinear.from_linear(torch.nn.Linear(64, n, bias=False)) for n in (64, 32, 32))
    x = torch.randn(2, 8, 64, dtype=torch.bfloat16)
    together = [layer(x) for layer in (q, k, v)]
    assert len(calls) == 1  # q, k and v share one quantisation of x
    x.mul_(2)  # changed in place: quantised again, not served stale
    doubled = q(x)
    assert len(calls) == 2
    torch.testing.assert_close(doubled, together[0] * 2, rtol=0.07, atol=0.07)
    y = x.clone()
    del x
    q(y)
    assert len(calls) == 3  # another tensor, another quantisation


def test_host_embeddings_give_the_same_rows_and_gradient_flow(tiny_env):  # noqa: F811
    from peft import LoraConfig, get_peft_model

    from bioreview_assets.ml.models import resolve_base_model
    from bioreview_assets.ml.training import load_training_model
    from bioreview_assets.ml.training.activation_memory import move_input_embeddings_to_host

    cfg = tiny_cfg(quantization="none")
    model = get_peft_model(load_training_model(cfg, resolve_base_model(cfg)),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    with pytest.raises(ValueError, match="tied to lm_head"):  # the tiny model ties them: refused, not broken
        move_input_embeddings_to_host(model)
    lm_head = model.get_output_embeddings()
    lm_head.weight = torch.nn.Parameter(lm_head.weight.detach().clone(), requires_grad=False)  # untied
    ids = torch.tensor([list(range(5, 69)), list(range(100, 164))])
    table = model.get_input_embeddings().weight.detach().clone()
    with torch.no_grad():
        reference = model(input_ids=ids, labels=ids).loss
    freed = move_input_embeddings_to_host(model)
    assert freed == table.numel() * table.element_size()
    assert not any("embed_tokens" in name for name, _ in model.named_parameters())  # not a parameter any more
    torch.testing.assert_close(model.get_input_embeddings()(ids), table[ids])
    for _ in range(2):  # the reused buffer gives the second call its own rows
        loss = model(input_ids=ids, labels=ids).loss
    torch.testing.assert_close(loss, reference)
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
