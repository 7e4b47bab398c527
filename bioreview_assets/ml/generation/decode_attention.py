"""Packed-GQA attention that holds under torch.compile, for compiled decode steps.

transformers compiles decode steps with a static cache ("reduce-overhead": CUDA graphs) unless disable_compile is
set, but under compilation its SDPA path skips the pack_gqa trick and repeats K/V to every query head (`repeat_kv`):
for Qwen3-8B (32 query heads on 8 K/V heads) a copy of the whole cache and 4x its reads per step. Both functions
here pack a group's query heads together for one-token queries, in a form that compiles (one graph, no breaks):
packed_gqa_sdpa into SDPA's query-length axis (the same arithmetic as transformers' eager pack_gqa), and
packed_gqa_flash_decoding into decode_kernel.py's Triton kernel, which reads only the cache positions the mask keeps.
Measured on the H200 at batch 128 (benchmarks/results/gen_compiled_h200.txt): compiled decoding 0.40 s/article after
compilation with the kernel (decode 32.6 ms/step), 0.60 with packed SDPA (58.6 ms/step), 0.72 eager; compilation
takes about 70 s with the kernel, so the backend's GPU default stays eager (see transformers_backend.py).
"""

from __future__ import annotations

import importlib.util
import logging
from typing import Any

log = logging.getLogger(__name__)

ATTENTION_NAME = "sdpa_packed_gqa"
# No "flash" in the name: transformers takes such names for flash-attention kernels to fetch from the hub.
FLASH_DECODING_NAME = "triton_decode_packed_gqa"


def packed_gqa_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any):
    """transformers attention function: SDPA with a one-token query packed per K/V head; sdpa otherwise."""
    return _packed_gqa_attention(module, query, key, value, attention_mask, flash_decoding=False, **kwargs)


def packed_gqa_flash_decoding(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any):
    """transformers attention function: decode_kernel's Triton kernel for one-token queries with a boolean mask (what
    sdpa_mask builds) on CUDA; sdpa otherwise."""
    return _packed_gqa_attention(module, query, key, value, attention_mask, flash_decoding=True, **kwargs)


def _packed_gqa_attention(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, *,
                          flash_decoding: bool, **kwargs: Any):
    import torch
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    groups = getattr(module, "num_key_value_groups", 1)
    batch, heads, q_length, dim = query.shape
    packable = (
        q_length == 1
        and groups > 1
        and attention_mask is not None  # no mask: transformers' own path already uses SDPA's enable_gqa
        and attention_mask.shape[1] == 1  # one mask for all heads, so it broadcasts over a group's queries
        and kwargs.get("position_bias") is None
        and kwargs.get("softcap") is None
        and not kwargs.get("output_attentions", False)
    )
    if not packable:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    # (batch, kv_heads * groups, 1, dim) -> (batch, kv_heads, groups, dim): a group's queries share their K/V head.
    packed = query.reshape(batch, heads // groups, groups, dim)
    if flash_decoding and attention_mask.dtype == torch.bool and query.is_cuda:
        from bioreview_assets.ml.generation.decode_kernel import packed_decode_attention

        output = packed_decode_attention(packed, key, value, attention_mask[:, 0, 0, :], kwargs.get("scaling"))
        return output.reshape(batch, 1, heads, value.shape[-1]), None
    output = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=attention_mask, dropout_p=0.0, scale=kwargs.get("scaling")
    )
    return output.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


def use_packed_gqa_attention(model: Any, flash_decoding: bool | None = None) -> str | None:
    """Register the packed-GQA attentions (idempotent) and switch an sdpa model to one; returns its name, or None
    where the model is not sdpa (other implementations are left alone).

    flash_decoding None: decode_kernel's Triton kernel where the model is on CUDA and Triton is importable, packed
    SDPA elsewhere (the choice is logged); True insists on the kernel, False keeps SDPA.
    """
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, packed_gqa_sdpa)
    AttentionInterface.register(FLASH_DECODING_NAME, packed_gqa_flash_decoding)
    # Masks are built exactly as for sdpa (a name unknown to the mask interface would get no mask at all).
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    AttentionMaskInterface.register(FLASH_DECODING_NAME, sdpa_mask)
    if getattr(model.config, "_attn_implementation", None) not in ("sdpa", ATTENTION_NAME, FLASH_DECODING_NAME):
        return None
    device = next(model.parameters()).device
    triton_importable = importlib.util.find_spec("triton") is not None
    kernel_runs_here = device.type == "cuda" and triton_importable
    if flash_decoding is None:
        flash_decoding = kernel_runs_here
        log.info("compiled decode steps use %s on %s", "the Triton flash-decoding kernel" if flash_decoding
                 else "packed SDPA (no CUDA device or no Triton)", device)
    if flash_decoding:
        if not kernel_runs_here:
            raise RuntimeError(f"flash_decoding needs a CUDA model and Triton; the model is on {device}, Triton "
                               f"{'is' if triton_importable else 'is not'} importable")
        from bioreview_assets.ml.generation.decode_kernel import remember_sm_count

        remember_sm_count(device)
    name = FLASH_DECODING_NAME if flash_decoding else ATTENTION_NAME
    model.set_attn_implementation(name)
    return name
