"""Merge a LoRA adapter into an unquantised copy of its base model, for serving (merged_model asset)."""

from __future__ import annotations

import logging
from pathlib import Path

from bioreview_assets.config.model import ModelConfig
from bioreview_assets.store.atomic import atomic_dir
from bioreview_assets.store.content_identity import folder_hash
from bioreview_assets.store.records import MergeMeta

log = logging.getLogger(__name__)


def merge_adapter(cfg: ModelConfig, adapter_dir: Path, out_dir: Path) -> Path:
    """LoRA merged into a bf16 (fp32 on CPU) copy of the base, saved with the tokenizer; the folder appears atomically.

    The base is loaded unquantised even when the adapter was trained on NF4 weights (QLoRA): serving engines want
    plain weights, and the difference this makes is the NF4 rounding of the base, recorded in merge_meta.json.
    """
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from bioreview_assets.ml.lora_targets import load_adapter_checked
    from bioreview_assets.ml.models import resolve_base_model

    out_dir = Path(out_dir)
    dtype = torch.bfloat16 if torch.cuda.is_available() else torch.float32
    base_path = resolve_base_model(cfg)
    device_map = {"": 0} if torch.cuda.is_available() else {"": "cpu"}
    base = AutoModelForCausalLM.from_pretrained(str(base_path), dtype=dtype, device_map=device_map)
    merged = load_adapter_checked(base, adapter_dir).merge_and_unload()
    tokenizer = AutoTokenizer.from_pretrained(str(adapter_dir))
    with atomic_dir(out_dir) as tmp:
        merged.save_pretrained(str(tmp))
        tokenizer.save_pretrained(str(tmp))
        meta = MergeMeta(
            base_model=str(base_path),
            adapter_dir=str(adapter_dir),
            # Content identities: which adapter these weights were merged from, and what the merged folder holds
            # (generations are keyed by the latter; a merged model older than its adapter is refused at serving).
            adapter_weights_hash=folder_hash(adapter_dir),
            weights_hash=folder_hash(tmp),
            dtype=str(dtype).removeprefix("torch."),
            trained_on_quantization=cfg.training.quantization,
        )
        meta.write(tmp)
    log.info("merged %s into %s -> %s (%s)", adapter_dir, base_path, out_dir, meta.dtype)
    return out_dir
