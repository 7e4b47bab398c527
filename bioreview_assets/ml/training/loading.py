"""Base models for training (NF4 QLoRA or plain weights, never upcast) and trained adapters for evaluation."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioreview_assets.core.quantization import FP8_MATMULS, INT8_MATMULS, NF4_STORED
from bioreview_assets.ml.kernels import speed_kernels
import bioreview_assets.ml.training.distributed as distributed
from bioreview_assets.ml.training.precision import (
    attn_implementation,
    check_no_upcast,
    compute_dtype,
    cuda_available,
    keep_nf4_training_layout_on_cpu,
    prepare_for_kbit_free,
)

if TYPE_CHECKING:  # pydantic stays off the benchmarks' GPU path: the configs are only annotations here
    from bioreview_assets.config.model import ModelConfig

log = logging.getLogger(__name__)

def load_training_model(cfg: ModelConfig, base_path: Path):
    """The base for training: NF4 + double quantisation (nf4, nf4-fp8, nf4-int8), or plain weights (none; fp8 converts them
    later)."""
    from transformers import AutoModelForCausalLM

    dtype = compute_dtype(cfg.training)
    kwargs: dict[str, Any] = {"dtype": dtype, "attn_implementation": attn_implementation()}
    fsdp = cfg.training.strategy == "fsdp"
    if cfg.training.quantization in NF4_STORED:
        kwargs["quantization_config"] = nf4_config(dtype, cfg.training.quantization_skip_modules,
                                                   quant_storage=dtype if fsdp else None)
    device_map = training_device_map(cfg)
    if cfg.training.quantization in FP8_MATMULS and cuda_available():
        from bioreview_assets.ml.training.fp8 import check_fp8_device

        check_fp8_device("cuda")  # this rank's GPU, before loading a base that it could not train in FP8
    if cfg.training.quantization in INT8_MATMULS and cuda_available():
        from bioreview_assets.ml.training.int8 import check_int8_device

        check_int8_device("cuda")  # likewise for the INT8 path (Ampere and newer)
    try:
        model = AutoModelForCausalLM.from_pretrained(str(base_path), device_map=device_map, **kwargs)
    except ValueError as err:
        if "scaled_dot_product_attention" not in str(err):
            raise
        # Gemma-2's soft-capped attention has no SDPA path in transformers: eager attention (memory grows with the
        # square of the sequence; flash-attn, when installed on the GPU, is picked above instead).
        log.warning("%s has no SDPA attention: training with eager attention", base_path)
        kwargs["attn_implementation"] = "eager"
        model = AutoModelForCausalLM.from_pretrained(str(base_path), device_map=device_map, **kwargs)
    prepare_for_kbit_free(model)
    if cfg.training.quantization in NF4_STORED:
        keep_nf4_training_layout_on_cpu(model)
    check_no_upcast(model, dtype)
    speed_kernels(model.config, "cuda" if cuda_available() else "cpu")  # warns once when a fast kernel is missing
    log.info(
        "loaded %s (%s, %s, attention=%s)",
        base_path,
        cfg.training.quantization,
        dtype,
        model.config._attn_implementation,
    )
    return model


def training_device_map(cfg: ModelConfig) -> dict[str, Any]:
    """Where this rank loads the base: its own GPU (`{"": local_rank}`), or the CPU.

    DDP and the 4-bit FSDP base load whole on each rank's GPU (bitsandbytes quantises there; FSDP then keeps the
    rank's shard). An unquantised FSDP base loads on the CPU, real weights on local rank 0 only (transformers'
    cpu-RAM-efficient loading, switched on by the launcher), and FSDP moves each rank's shard to its GPU.
    """
    if not cuda_available():
        return {"": "cpu"}
    if cfg.training.strategy == "fsdp" and cfg.training.quantization != "nf4":
        return {"": "cpu"}
    return {"": distributed.current().local_rank}


def nf4_config(dtype, skip_modules: list[str] | None = None, *, quant_storage=None):
    """bitsandbytes 4-bit NF4 with double quantisation (QLoRA), computing in `dtype`; skip_modules stay unquantised.

    quant_storage: the dtype the packed 4-bit weights are stored in (uint8 by default). FSDP shards float tensors of
    one dtype per unit, so FSDP-QLoRA stores them in the compute dtype.
    """
    import torch
    from transformers import BitsAndBytesConfig

    extra = {"llm_int8_skip_modules": ["lm_head", *skip_modules]} if skip_modules else {}
    return BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=dtype,
        bnb_4bit_quant_storage=quant_storage or torch.uint8,
        **extra,
    )


def load_adapter_model(cfg: ModelConfig, adapter_dir: Path, *, quantized: bool | None = None):
    """Base model (NF4 when the config trained NF4, unless `quantized` says otherwise) + the saved adapter, eval mode."""
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from bioreview_assets.ml.lora_targets import load_adapter_checked
    from bioreview_assets.ml.models import resolve_base_model

    base_path = resolve_base_model(cfg)
    if quantized is None:
        quantized = cfg.training.quantization in NF4_STORED  # the NF4 base the adapter trained against
    if quantized:
        base = load_training_model(cfg, base_path)
    else:
        device_map = {"": 0} if cuda_available() else {"": "cpu"}
        # An fp8-trained adapter is evaluated on the bf16 base (its e4m3 copy exists only for training's matmuls).
        base = AutoModelForCausalLM.from_pretrained(
            str(base_path), dtype=compute_dtype(cfg.training), device_map=device_map
        )
    model = load_adapter_checked(base, adapter_dir)
    # Run the adapter in the dtype it was trained and saved in (trl trains QLoRA adapters in bf16; peft would load
    # them as fp32), so the reloaded model computes exactly what the trained one did.
    saved_dtype = next(iter(load_file(str(Path(adapter_dir) / "adapter_model.safetensors")).values())).dtype
    for name, param in model.named_parameters():
        if "lora_" in name:
            param.data = param.data.to(saved_dtype)
    return model.eval()
