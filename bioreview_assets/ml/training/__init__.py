"""LoRA / QLoRA supervised fine-tuning (torch, transformers, peft, trl; imported lazily inside the functions).

    recipe       train_adapter: what the adapter asset calls (featurise -> resume point -> train -> save -> meta)
    trainer      the trl SFTTrainer of a training config (LoRA config, SFT arguments, resume-safe dtypes)
    loading      base models for training (NF4 or plain) and trained adapters for evaluation
    checkpoints  run identity, resume from the newest complete checkpoint, checkpoint probes' copies
    monitoring   callbacks: step timing, tokens/s, GPU memory, progress
    metadata     the saved adapter and adapter_meta.json
    features     chat rows -> input_ids + completion-only labels (the one chat renderer)
    precision    compute dtype, attention kernel, no fp32 upcasts, the NF4 layout kept on CPU
    liger        Liger's RMSNorm/RoPE/SwiGLU kernels where they can run
    fused_lora   the fused LoRA forward (one addmm; the recompute stops before the last projection's base matmul)
    activation_memory  selective checkpointing, activation offloading, input embeddings in host memory
    launch       training.gpus > 1: torchrun with N ranks, log relay, the failing rank's error
    worker       one rank under torchrun (`python -m ...worker <spec.json>`)
    distributed  this process's ranks (torchrun's environment), the collectives beyond the trainer's

What makes an 8B QLoRA step fit at 16k tokens:
* no fp32 upcast of norms/embeddings (peft's prepare_model_for_kbit_training does it): activations stay bf16 and
  SDPA keeps its flash kernel;
* trl 1.16's fused LM head (always on in SFTTrainer): log-probs in tiles, only at supervised positions, so the
  (16k x 152k) logits are never materialised. This is the fused linear cross-entropy; Liger's own is refused by
  trl because it would replace the same forward;
* Liger kernels for RMSNorm, RoPE and SwiGLU (fewer saved activations, fewer launches), when installed on a GPU;
* non-reentrant gradient checkpointing, switched on by the trainer in train mode; selective checkpointing keeps
  the attention outputs of a configured number of layers (each skips its attention recompute for 128 MiB);
* LoRA layers whose B projection, scaling and add run as one addmm, and whose last projection per block lets the
  recompute stop before its base matmul (fused_lora_forward).

H100, Qwen3-8B shape, 16k tokens, one process per setup (benchmarks/results/train_throughput_h100.txt): plain PEFT
QLoRA 4,571 tok/s and 46.8 GiB; this step 7,797 tok/s and 13.2 GiB; attention outputs kept in 20 of 36 layers (the
qwen3-8b config) 8,063 tok/s and 15.7 GiB; in all layers 8,290 tok/s and 17.7 GiB, or 8,008 tok/s and 13.4 GiB with
the checkpointed inputs offloaded to host memory.

Importable without pydantic or polars (the GPU benchmark box): configs are annotations only, store/ is lazy.
"""

from bioreview_assets.ml.training.loading import load_adapter_model, load_training_model
from bioreview_assets.ml.training.recipe import TrainingRun, train_adapter
from bioreview_assets.ml.training.trainer import build_trainer, lora_config

__all__ = ["TrainingRun", "build_trainer", "load_adapter_model", "load_training_model", "lora_config", "train_adapter"]
