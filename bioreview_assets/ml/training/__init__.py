"""LoRA / QLoRA supervised fine-tuning (torch, transformers, peft, trl; imported lazily inside the functions).

    recipe       train_adapter: what the adapter asset calls (featurise -> resume point -> train -> save -> meta)
    trainer      the trl SFTTrainer of a training config (LoRA config, SFT arguments, resume-safe dtypes)
    loading      base models for training (NF4 or plain) and trained adapters for evaluation
    checkpoints  run identity, resume from the newest complete checkpoint, checkpoint probes' copies
    monitoring   callbacks: step timing, tokens/s, GPU memory, progress
    metadata     the saved adapter and adapter_meta.json
    features     chat rows -> input_ids + completion-only labels (the one chat renderer)
    speed        GPU memory/speed features (Liger, selective checkpointing, offloading, fused LoRA forward)
    launch       training.gpus > 1: torchrun with N ranks, log relay, the failing rank's error
    worker       one rank under torchrun (`python -m ...worker <spec.json>`)
    distributed  this process's ranks (torchrun's environment), the collectives beyond the trainer's

Importable without pydantic or polars (the GPU benchmark box): configs are annotations only, store/ is lazy.
"""

from bioreview_assets.ml.training.loading import load_adapter_model, load_training_model
from bioreview_assets.ml.training.recipe import TrainingRun, train_adapter
from bioreview_assets.ml.training.trainer import build_trainer, lora_config

__all__ = ["TrainingRun", "build_trainer", "load_adapter_model", "load_training_model", "lora_config", "train_adapter"]
