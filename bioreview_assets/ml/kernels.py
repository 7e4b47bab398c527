"""Kernels an architecture needs for speed: found or not, said once and loudly when missing on a GPU.

Qwen3.5's Gated DeltaNet layers run transformers' PyTorch reference path without flash-linear-attention (its
Triton kernels, package `fla` from fla-core): correct but about 100x slower in generation (the reference measured
281 s per article for Qwen3.5-9B). transformers picks the kernel when its model module is imported, so this check
must run in the process that loads the model. Standard library only (benchmarks import it on a bare GPU box).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import logging
from typing import Any

log = logging.getLogger(__name__)

# Model types with linear-attention layers whose fast path lives in flash-linear-attention.
LINEAR_ATTENTION_MODEL_TYPES = frozenset(
    {"qwen3_5", "qwen3_5_text", "qwen3_5_moe", "qwen3_5_moe_text", "qwen3_next"}
)
FLA_INSTALL = "pip install flash-linear-attention==0.6.0 fla-core==0.6.0"
_warned: set[str] = set()


def _version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def model_types(config: Any) -> set[str]:
    """The model types of a config and of its text config (VL wrappers nest the language model)."""
    types = {getattr(config, "model_type", None)}
    text = config.get_text_config() if hasattr(config, "get_text_config") else None
    types.add(getattr(text, "model_type", None))
    return {t for t in types if t}


def speed_kernels(config: Any, device: str) -> dict[str, Any]:
    """Kernel facts for a model config on `device` ('cuda...' or 'cpu'); warns once per process when one is missing."""
    types = model_types(config)
    if not types & LINEAR_ATTENTION_MODEL_TYPES:
        return {}
    fla = importlib.util.find_spec("fla") is not None
    facts = {
        "linear_attention": "flash-linear-attention" if fla else "torch reference path",
        "fla_core": _version("fla-core"),
        "causal_conv1d": _version("causal-conv1d"),
    }
    if not device.startswith("cuda"):
        facts["note"] = "CPU: the torch path is the only one (fla's kernels are Triton/GPU)"
        return facts
    if not fla and "fla" not in _warned:
        _warned.add("fla")
        banner = "!" * 100
        log.warning(
            "\n%s\n%s: flash-linear-attention is NOT installed, so its Gated DeltaNet (linear attention) layers run "
            "transformers' PyTorch reference path: about 100x slower generation (the reference measured 281 s per "
            "article for Qwen3.5-9B) and slower training.\nInstall it: %s (the GPU image installs it: extra `gpu`)."
            "\n%s",
            banner, "/".join(sorted(types)), FLA_INSTALL, banner,
        )
    if facts["causal_conv1d"] is None and "conv" not in _warned:
        _warned.add("conv")
        log.info("causal-conv1d is not installed: the short convolution of the linear-attention layers uses torch's "
                 "conv1d (minor; `pip install causal-conv1d` where a wheel matches the CUDA/torch build)")
    return facts
