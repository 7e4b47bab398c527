"""Speed and memory setup of the SFT step, shared by train_adapter and benchmarks/train_throughput.py.

What makes an 8B QLoRA step fit at 16k tokens (ENVIRONMENT.md, GPU figures):
* no fp32 upcast of norms/embeddings (peft's prepare_model_for_kbit_training does it): activations stay bf16 and
  SDPA keeps its flash kernel;
* trl 1.16's fused LM head (always on in SFTTrainer): log-probs in tiles, only at supervised positions, so the
  (16k x 152k) logits are never materialised. This is the fused linear cross-entropy; Liger's own is refused by
  trl because it would replace the same forward;
* Liger kernels for RMSNorm, RoPE and SwiGLU (fewer saved activations, fewer launches), when installed on a GPU;
* non-reentrant gradient checkpointing, switched on by the trainer in train mode.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Literal

from bioreview_assets.settings import TrainingConfig

log = logging.getLogger(__name__)

LIGER_KERNELS = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False}


class LigerUnavailableError(RuntimeError):
    """`liger: on` was asked for where Liger cannot run."""


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def compute_dtype(training: TrainingConfig):
    """bf16 on a GPU when the config asks for it, fp32 otherwise (CPU bf16 matmuls are slow and gain nothing)."""
    import torch

    return torch.bfloat16 if training.bf16 and cuda_available() else torch.float32


def attn_implementation() -> str:
    """flash_attention_2 when flash-attn is installed on a GPU (varlen kernels for packing), else PyTorch SDPA."""
    if cuda_available() and importlib.util.find_spec("flash_attn") is not None:
        return "flash_attention_2"
    return "sdpa"


def liger_available() -> bool:
    """Liger can run here: the package is installed and a CUDA device is present (its kernels are Triton)."""
    return cuda_available() and importlib.util.find_spec("liger_kernel") is not None


def apply_liger(model, mode: Literal["auto", "on", "off"]) -> list[str]:
    """Patch the model instance with Liger's RMSNorm/RoPE/SwiGLU kernels per `mode`; return the kernels applied."""
    if mode == "off":
        log.info("liger: off (config)")
        return []
    if not liger_available():
        reason = "no CUDA device" if not cuda_available() else "liger-kernel is not installed"
        if mode == "on":
            raise LigerUnavailableError(f"training.liger is 'on' but Liger cannot run here: {reason}")
        log.info("liger: auto -> not used (%s)", reason)
        return []
    from liger_kernel.transformers.monkey_patch import MODEL_TYPE_TO_APPLY_LIGER_FN, _apply_liger_kernel_to_instance

    model_type = model.config.model_type
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        if mode == "on":
            raise LigerUnavailableError(f"training.liger is 'on' but Liger has no kernels for {model_type!r}")
        log.info("liger: auto -> not used (no kernels for model type %r)", model_type)
        return []
    # trl's fused LM head replaces the loss; Liger's fused linear cross-entropy would patch the same forward.
    _apply_liger_kernel_to_instance(model=model, fused_linear_cross_entropy=False, **LIGER_KERNELS)
    applied = [name for name, on in LIGER_KERNELS.items() if on]
    log.info("liger: %s -> applied %s to %s", mode, applied, model_type)
    return applied


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
