"""Liger kernels for RMSNorm, RoPE and SwiGLU (fewer saved activations, fewer launches), when installed on a GPU.

trl's fused LM head already computes the loss in tiles (never the full logits), so Liger's own fused linear
cross-entropy, which would replace the same forward, stays off.
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Literal

from bioreview_assets.ml.training.precision import cuda_available

log = logging.getLogger(__name__)

LIGER_KERNELS = {"rope": True, "rms_norm": True, "swiglu": True, "cross_entropy": False}
# Kernels Liger (0.8.5) refuses for a model type: its apply function raises NotImplementedError when asked for them,
# which failed every Qwen3.5 training step on the H100 (benchmarks/results/train_qwen35_fla_h100.txt). Those models
# get the rest of the kernels.
LIGER_UNSUPPORTED = {
    "qwen3_5": {"rope"}, "qwen3_5_text": {"rope"}, "qwen3_5_moe": {"rope"}, "qwen3_5_moe_text": {"rope"},
    "glm4": {"rope"}, "glm4v": {"rope"}, "glm4v_moe": {"rope"},
}


def liger_kernels_for(model_type: str) -> dict[str, bool]:
    """The Liger kernel switches for a model type: LIGER_KERNELS less those Liger refuses for it."""
    refused = LIGER_UNSUPPORTED.get(model_type, set())
    return {name: on and name not in refused for name, on in LIGER_KERNELS.items()}


class LigerUnavailableError(RuntimeError):
    """`liger: on` was asked for where Liger cannot run."""


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
    from liger_kernel.transformers.monkey_patch import (
        MODEL_TYPE_TO_APPLY_LIGER_FN,
        _apply_liger_kernel_to_instance,
    )

    model_type = model.config.model_type
    if model_type not in MODEL_TYPE_TO_APPLY_LIGER_FN:
        if mode == "on":
            raise LigerUnavailableError(f"training.liger is 'on' but Liger has no kernels for {model_type!r}")
        log.info("liger: auto -> not used (no kernels for model type %r)", model_type)
        return []
    # trl's fused LM head replaces the loss; Liger's fused linear cross-entropy would patch the same forward.
    kernels = liger_kernels_for(model_type)
    _apply_liger_kernel_to_instance(model=model, fused_linear_cross_entropy=False, **kernels)
    applied = [name for name, on in kernels.items() if on]
    log.info("liger: %s -> applied %s to %s", mode, applied, model_type)
    return applied
