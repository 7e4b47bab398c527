"""Padding-free packing only where the model keeps each packed row to itself (training.packing).

trl 1.16 packs with `packing_strategy="bfd"` padding-free: the rows of a step become one sequence with no attention
mask, position_ids restarting at every row, and cu_seq_lens_q/k + seq_idx for varlen kernels. Whether the rows then
stay apart depends on the model's kernels, not on trl:

* full attention: transformers 5 builds a block-diagonal causal mask from the restarting position_ids for SDPA and
  eager attention (masking_utils.find_packed_sequence_indices), and flash-attention 2/3 take cu_seq_lens. Verified on
  CPU for sdpa and eager (bioreview_assets_tests/ml/test_packing.py: each row's loss packed equals its loss alone).
* linear attention (Qwen3.5's Gated DeltaNet): transformers' torch reference path ignores the boundaries
  (torch_chunk_gated_delta_rule drops cu_seqlens; the torch causal conv1d drops seq_idx), so the recurrent state and
  the conv window run on from one row into the next. flash-linear-attention's chunk_gated_delta_rule and
  causal-conv1d's kernel take them; without both, packing would train every row after the first on its neighbour.

A combination that would leak is refused with the reason, never trained silently.
"""

from __future__ import annotations

import importlib.util

# Attention implementations that separate packed rows given restarting position_ids / cu_seq_lens (see above).
ROW_SEPARATING_ATTENTION = frozenset({"sdpa", "eager", "flash_attention_2", "flash_attention_3"})
# The packages whose kernels honour row boundaries in linear-attention layers (transformers binds them on import).
LINEAR_ATTENTION_VARLEN = {"fla": "flash-linear-attention", "causal_conv1d": "causal-conv1d"}


class PackingLeaks(ValueError):
    """training.packing asked for with kernels that would let packed rows attend to (or carry state into) others."""


def has_linear_attention(model) -> bool:
    config = getattr(model, "config", None)
    config = getattr(config, "text_config", None) or config
    return "linear_attention" in (getattr(config, "layer_types", None) or [])


def check_packing_keeps_rows_apart(model) -> None:
    """Raise PackingLeaks unless every token mixer of `model` keeps padding-free packed rows apart."""
    attention = getattr(model.config, "_attn_implementation", None) or "sdpa"
    if attention not in ROW_SEPARATING_ATTENTION:
        raise PackingLeaks(
            f"training.packing: attention implementation {attention!r} is not known to keep padding-free packed rows "
            f"apart (verified: {', '.join(sorted(ROW_SEPARATING_ATTENTION))}); use one of them or packing: false")
    if has_linear_attention(model):
        missing = [name for module, name in LINEAR_ATTENTION_VARLEN.items() if importlib.util.find_spec(module) is None]
        if missing:
            raise PackingLeaks(
                "training.packing: this model has linear-attention (Gated DeltaNet) layers, and transformers' torch "
                "path for them ignores row boundaries (the chunked delta rule drops cu_seqlens, the causal conv1d "
                "drops seq_idx): packed rows would carry state into each other. Install "
                f"{' and '.join(missing)} (flash-linear-attention and causal-conv1d take the boundaries; GPU only), "
                "or set packing: false")
