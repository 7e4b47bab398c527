"""What a finished training leaves: the saved adapter and adapter_meta.json (provenance, data, losses, speed)."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import TYPE_CHECKING

from bioreview_assets.ml.kernels import speed_kernels
from bioreview_assets.ml.lora_targets import is_language_module, peft_target_modules
from bioreview_assets.ml.runtime_env import gpu_name
from bioreview_assets.ml.training.checkpoints import ResumePoint, strategy_name
from bioreview_assets.ml.training.features import FeatureStats
from bioreview_assets.ml.training.monitoring import TrainingMonitor, has_callback
from bioreview_assets.ml.training.precision import compute_dtype
from bioreview_assets.store.atomic import atomic_dir
from bioreview_assets.store.records import AdapterMeta

if TYPE_CHECKING:  # pydantic stays off the benchmarks' GPU path: the configs are only annotations here
    from bioreview_assets.config.model import ModelConfig

log = logging.getLogger(__name__)

def save_adapter(model, tokenizer, target: Path, *, state_dict: dict | None = None) -> None:
    """Save the LoRA adapter and tokenizer into `target` atomically (temp folder + rename).

    state_dict: the model's full state dict where its own holds shards (FSDP); peft keeps the adapter's entries.
    """
    with atomic_dir(target) as tmp:
        model.save_pretrained(str(tmp), **({"state_dict": state_dict} if state_dict is not None else {}))
        tokenizer.save_pretrained(str(tmp))
        sort_target_modules(Path(tmp) / "adapter_config.json")


def sort_target_modules(config_file: Path) -> None:
    """peft writes the expanded target_modules in set order, which follows the process's string-hash seed: two runs
    training bit-identical weights wrote different adapter_config.json bytes, so a different weights_hash (the
    adapter's identity in generation keys). Sorted, the same weights give the same identity."""
    config = json.loads(config_file.read_text())
    if isinstance(config.get("target_modules"), list):
        config["target_modules"] = sorted(config["target_modules"])
        config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")


def loss_history(log_history: list[dict]) -> dict[str, list]:
    """Train and val loss per step from the trainer's log (restored from the checkpoint on resume)."""
    return {
        "train": [[e["step"], e["loss"]] for e in log_history if "loss" in e and "step" in e],
        "val": [[e["step"], e["eval_loss"]] for e in log_history if "eval_loss" in e and "step" in e],
    }


def lora_module_report(model) -> dict[str, dict]:
    """LoRA-wrapped modules per decoder-layer type (W20: hybrid models may leave some layer types unwrapped).

    Layers are the text decoder's; anything wrapped in a vision/audio tower is reported under "vision_or_audio"
    (empty by construction with scope: language_model), anything else outside the layers under "outside_layers".
    """
    from peft.tuners.lora import LoraLayer

    config = model.get_base_model().config if hasattr(model, "get_base_model") else model.config
    config = config.get_text_config()
    layer_types = getattr(config, "layer_types", None)
    layer_kinds: dict[int, str] = {}
    for name, module in model.named_modules():
        found = re.search(r"\.layers\.(\d+)$", name)
        if found and is_language_module(name):
            index = int(found.group(1))
            layer_kinds[index] = layer_types[index] if layer_types else type(module).__name__
    report: dict[str, dict] = {
        kind: {"layers": sum(k == kind for k in layer_kinds.values()), "wrapped": {}, "trainable_params": 0}
        for kind in sorted(set(layer_kinds.values()))
    }
    for name, module in model.named_modules():
        if not isinstance(module, LoraLayer):
            continue
        found = re.search(r"\.layers\.(\d+)\.(.+)$", name)
        if not is_language_module(name):
            kind, local = "vision_or_audio", name.removeprefix("base_model.model.")
        elif found:
            kind, local = layer_kinds[int(found.group(1))], found.group(2)
        else:
            kind, local = "outside_layers", name.removeprefix("base_model.model.")
        entry = report.setdefault(kind, {"layers": 0, "wrapped": {}, "trainable_params": 0})
        entry["wrapped"][local] = type(module.get_base_layer()).__name__
        entry["trainable_params"] += sum(p.numel() for p in module.parameters() if p.requires_grad)
    for kind, entry in report.items():
        if not entry["wrapped"]:
            log.warning("LoRA wrapped no module in %d %s layers (targets did not match there)", entry["layers"], kind)
    return report


def adapter_meta(
    *,
    cfg: ModelConfig,
    trainer,
    identity: dict,
    versions: dict,
    resume: ResumePoint,
    train_stats: FeatureStats,
    eval_stats: FeatureStats,
    monitor: TrainingMonitor,
    liger: list[str],
    output_dir: Path,
    wall_time_s: float,
    per_rank: list[dict],
) -> AdapterMeta:
    """The adapter's metadata: provenance, what was trained on, how it went (no weights hash or tracking yet).

    per_rank: each rank's trained tokens, training seconds and peak GPU memory (distributed.gather), rank 0 first.
    """
    import torch

    model = trainer.model
    history = loss_history(trainer.state.log_history)
    peak = per_rank[0]["peak_gpu_memory_gib"]
    fsdp = cfg.training.strategy == "fsdp" and len(per_rank) > 1
    return AdapterMeta.from_json({
        **identity,
        "base_model": str(getattr(model.get_base_model().config, "_name_or_path", "")),
        "library_versions": versions,
        "gpu": gpu_name(),
        "device": "cuda" if torch.cuda.is_available() else "cpu",
        "quantization": cfg.training.quantization,
        "compute_dtype": str(compute_dtype(cfg.training)).removeprefix("torch."),
        "attn_implementation": model.get_base_model().config._attn_implementation,
        "liger_kernels": liger,
        "fused_lm_head": "trl chunked log-probs (no full logits)",
        # Under FSDP the wrapped decoder layers are checkpointed by FSDP itself (trainer.parallel_settings).
        "gradient_checkpointing": trainer.args.gradient_checkpointing
        or (fsdp and bool(trainer.args.fsdp_config.get("activation_checkpointing"))),
        "selective_checkpointing_layers": cfg.training.selective_checkpointing_layers
        if has_callback(trainer, "SelectiveCheckpointing") else 0,
        "activation_offloading": trainer.args.activation_offloading,
        "fused_lora_forward": True,
        "packing": cfg.training.packing,
        "optim": trainer.args.optim.value if hasattr(trainer.args.optim, "value") else str(trainer.args.optim),
        "trainable_params": sum(p.numel() for p in model.parameters() if p.requires_grad),
        "total_params": sum(p.numel() for p in model.parameters()),
        "lora_modules": lora_module_report(model),
        "lora_target_modules": peft_target_modules(cfg.training.lora),
        "speed_kernels": speed_kernels(model.get_base_model().config, "cuda" if torch.cuda.is_available() else "cpu"),
        "train_rows": train_stats.kept,
        "train_rows_dropped_over_length": train_stats.dropped_over_length,
        "val_subset_rows": eval_stats.kept,
        "val_rows_dropped_over_length": eval_stats.dropped_over_length,
        "masked_token_fraction": round(train_stats.masked_fraction, 6),
        "train_tokens_total": train_stats.total_tokens,
        "supervised_tokens_total": train_stats.supervised_tokens,
        "global_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "resumed_from_step": resume.step if resume.path else None,
        "resume_version_differences": resume.version_differences,
        "discarded_checkpoints": resume.discarded,
        "loss_history": history,
        "final_train_loss": history["train"][-1][1] if history["train"] else None,
        "final_val_loss": history["val"][-1][1] if history["val"] else None,
        "world_size": len(per_rank),
        "strategy": strategy_name(len(per_rank), cfg.training.strategy),
        # FSDP: how many parameters are sharded across the ranks (DTensors), of all (4-bit base weights included
        # only when stored in a float dtype: accelerate leaves uint8-stored ones whole on every rank).
        "fsdp_sharded_params": _sharded(model) if fsdp else None,
        "gradient_accumulation_per_rank": trainer.args.gradient_accumulation_steps,
        "effective_batch": trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps
        * len(per_rank),
        # Total over the ranks (trl's token count is summed over them), per training second of rank 0.
        "tokens_per_s": monitor.tokens_per_s,
        "tokens_per_s_per_rank": [round(r["tokens"] / r["seconds"], 1) if r["seconds"] and r["tokens"] else None
                                  for r in per_rank],
        "peak_gpu_memory_gib_per_rank": [round(r["peak_gpu_memory_gib"], 3) if r["peak_gpu_memory_gib"] is not None
                                         else None for r in per_rank],
        "steps_this_run": monitor.steps,
        "train_time_s": round(monitor.train_seconds, 2),
        "peak_gpu_memory_gib": round(peak, 3) if peak is not None else None,
        "wall_time_s": round(wall_time_s, 2),
        "adapter_dir": str(output_dir / "adapter"),
        "checkpoints_dir": str(output_dir / "checkpoints"),
    })


def _sharded(model) -> dict[str, int]:
    from torch.distributed.tensor import DTensor

    params = list(model.parameters())
    return {"sharded": sum(isinstance(p, DTensor) for p in params), "of": len(params)}
