"""Two host-side levers for batched decoding with transformers on a GPU (measured on the H200, Qwen3-8B shape, batch
128, 4,096-token prompts: the eager loop takes 65.6 ms a step for 37.2 ms of GPU work; benchmarks/results/gen_*_h200.txt).

* Deferred stop check. transformers 5.24 asks the GPU after every step whether all sequences have finished
  (`unfinished_sequences.max() == 0` read on the host), so the host cannot queue step k+1 while step k runs. Its
  DeferredStopCheck reads that flag one step late (one extra forward per batch, undone before returning) but is
  enabled for Apple's mps devices only ("we should enable it for cuda if we observe perf gains"): we enable it for
  CUDA while our backend generates.
* Packed-GQA attention under compilation. Compiled decode steps (torch.compile's "reduce-overhead" mode, which
  transformers applies to decode with a static cache) skip transformers' pack_gqa trick and repeat K/V to every query
  head (`repeat_kv`): for Qwen3-8B (32 query heads on 8 K/V heads) a copy of the whole cache and 4x its reads per
  step. packed_gqa_sdpa packs a group's query heads into SDPA's query-length axis instead, for one-token queries, in
  a form that compiles: the same arithmetic as transformers' eager pack_gqa, so eager outputs do not change.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

ATTENTION_NAME = "sdpa_packed_gqa"


def packed_gqa_sdpa(module: Any, query: Any, key: Any, value: Any, attention_mask: Any, **kwargs: Any):
    """transformers attention function: SDPA with a one-token query packed per K/V head; sdpa otherwise."""
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
    output = torch.nn.functional.scaled_dot_product_attention(
        packed, key, value, attn_mask=attention_mask, dropout_p=0.0, scale=kwargs.get("scaling")
    )
    return output.reshape(batch, heads, 1, value.shape[-1]).transpose(1, 2).contiguous(), None


def use_packed_gqa_attention(model: Any) -> None:
    """Register packed_gqa_sdpa (idempotent) and switch an sdpa model to it; other implementations are left alone."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(ATTENTION_NAME, packed_gqa_sdpa)
    # Masks are built exactly as for sdpa (a name unknown to the mask interface would get no mask at all).
    AttentionMaskInterface.register(ATTENTION_NAME, sdpa_mask)
    if getattr(model.config, "_attn_implementation", None) == "sdpa":
        model.set_attn_implementation(ATTENTION_NAME)


@contextlib.contextmanager
def deferred_stop_check(device_types: frozenset[str] = frozenset({"cuda"})) -> Iterator[bool]:
    """While open, transformers' generate reads its stop flag one step late on these devices too (yields whether
    this transformers has DeferredStopCheck; without it nothing changes)."""
    from transformers.generation import utils

    check = getattr(utils, "DeferredStopCheck", None)
    original = getattr(check, "__dict__", {}).get("is_supported")
    if not isinstance(original, staticmethod):
        yield False
        return

    def is_supported(device, cache, cache_is_returned, is_assistant):
        if device.type in device_types and not is_assistant:
            # transformers' own rule for the devices it enables: a returned cache must be croppable (undo a step).
            return cache is None or cache.is_croppable or not cache_is_returned
        return original.__func__(device, cache, cache_is_returned, is_assistant)

    check.is_supported = staticmethod(is_supported)
    try:
        yield True
    finally:
        check.is_supported = original
