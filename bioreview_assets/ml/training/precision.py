"""The training step's dtypes and weight layout: compute dtype, attention kernel, no fp32 upcasts, NF4 kept as
loaded on CPU (peft's prepare_model_for_kbit_training without its upcast: activations stay bf16 and SDPA keeps its
flash kernel)."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING

from bioreview_assets.ml.runtime_env import cpu_has_native_bf16

if TYPE_CHECKING:  # pydantic stays off the benchmarks' GPU path: the configs are only annotations here
    from bioreview_assets.config.model import TrainingConfig


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def compute_dtype(training: TrainingConfig):
    """bf16 when the config asks for it on a GPU or on a CPU with native bf16 matmuls, fp32 otherwise.

    On CPUs with avx512_bf16/AMX a LoRA step of SmolLM2-135M at 1,150 tokens measured ~5 s in bf16 against ~25 s
    in fp32 (2 cores); without those instructions bf16 is emulated and slower, so fp32 is kept there.
    """
    import torch

    if not training.bf16:
        return torch.float32
    return torch.bfloat16 if cuda_available() or cpu_has_native_bf16() else torch.float32


def attn_implementation() -> str:
    """flash_attention_2 when flash-attn is installed on a GPU (varlen kernels for packing), else PyTorch SDPA."""
    if cuda_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def check_no_upcast(model, dtype) -> None:
    """Fail if norms were upcast away from the compute dtype (that knocks SDPA off its flash path at 16k)."""
    upcast = [
        name
        for name, param in model.named_parameters()
        if "norm" in name and param.dtype != dtype and param.dtype.is_floating_point
    ]
    if upcast:
        raise RuntimeError(f"{len(upcast)} norm weights are not {dtype} (e.g. {upcast[0]}): something upcast them")


def keep_nf4_training_layout_on_cpu(model) -> None:
    """Stop bitsandbytes' CPU backend from repacking NF4 weights for its bf16 inference kernel.

    bitsandbytes 0.50 on CPUs with AVX512-BF16 repacks a Linear4bit's weight on its first eval-mode forward, and
    unpacks it again in state_dict() without restoring the double-quantised absmax. After the first eval + checkpoint
    the in-memory base then differs from a fresh load (1e-3 on the logits), so a reloaded adapter or a resumed run
    would not compute what the trained one did. GPUs never take this path.
    """
    if cuda_available():
        return
    import bitsandbytes as bnb

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear4bit):
            module.support_avx512bf16_for_cpu = False


def prepare_for_kbit_free(model) -> None:
    """What peft's prepare_model_for_kbit_training does that we need, without its fp32 upcast.

    Freeze the base weights (LoRA adds the trainable ones) and turn the KV cache off (useless in training and
    incompatible with checkpointing). Input-embedding grads for checkpointing are enabled by the trainer, and
    checkpointing itself is switched on by the trainer when train() starts.
    """
    for param in model.parameters():
        param.requires_grad_(False)
    model.config.use_cache = False
