"""The trl SFTTrainer of a model's training settings: LoRA config, SFT arguments, resume-safe dtypes."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from bioreview_assets.core.quantization import EIGHT_BIT_MATMULS
from bioreview_assets.ml.lora_targets import check_lora_coverage, peft_target_modules
import bioreview_assets.ml.training.distributed as distributed
from bioreview_assets.ml.training.features import Features
from bioreview_assets.ml.training.activation_memory import (
    selective_checkpointing_callback,
    selective_checkpointing_layers,
    use_activation_offloading,
)
from bioreview_assets.ml.training.precision import cuda_available

if TYPE_CHECKING:  # pydantic stays off the benchmarks' GPU path: the configs are only annotations here
    from bioreview_assets.config.model import TrainingConfig

log = logging.getLogger(__name__)

def lora_config(training: TrainingConfig):
    """The peft LoRA config of a model's training settings."""
    from peft import LoraConfig

    return LoraConfig(
        r=training.lora.r,
        lora_alpha=training.lora.alpha,
        lora_dropout=training.lora.dropout,
        target_modules=peft_target_modules(training.lora),
        bias="none",
        task_type="CAUSAL_LM",
    )


def effective_optim(training: TrainingConfig) -> str:
    """The optimizer the trainer uses: bitsandbytes' 8-bit/paged optimizers need CUDA, so CPU runs use adamw_torch."""
    if not cuda_available() and any(tag in training.optim for tag in ("8bit", "bnb", "paged")):
        log.info("optim %s needs CUDA: using adamw_torch on CPU", training.optim)
        return "adamw_torch"
    return training.optim


def sft_config(training: TrainingConfig, checkpoints: Path, *, has_eval: bool, layer_classes: list[str] | None = None,
               **overrides):
    """trl SFTConfig for pre-tokenised rows (input_ids + our labels), checkpoints every save_steps.

    Under torchrun (training.gpus ranks) each rank accumulates its share of the effective batch; `layer_classes` are
    the decoder layer classes FSDP wraps one by one.
    """
    from trl import SFTConfig

    cuda = cuda_available()
    world_size = distributed.current().world_size
    settings = {
        "output_dir": str(checkpoints),
        "max_length": training.max_length,
        "packing": training.packing,
        # padding-free: position_ids restart per row, so packed rows never attend to each other (ml/training/packing.py
        # refuses the kernels that would let them)
        "packing_strategy": "bfd",
        "num_train_epochs": training.epochs,
        "max_steps": training.max_steps,
        "per_device_train_batch_size": training.per_device_batch_size,
        "per_device_eval_batch_size": training.per_device_batch_size,
        "gradient_accumulation_steps": distributed.accumulation_per_rank(training, world_size),
        "learning_rate": training.learning_rate,
        "lr_scheduler_type": training.lr_scheduler,
        "warmup_steps": training.warmup_ratio,  # transformers 5: a float < 1 is a ratio of the total steps
        "weight_decay": training.weight_decay,
        "max_grad_norm": training.max_grad_norm,
        "optim": effective_optim(training),
        "bf16": training.bf16 and cuda,
        "seed": training.seed,
        "logging_steps": training.logging_steps,
        # Log a NaN/inf loss as it is (the default logs the running mean instead, 0.0 at the start), so a diverged
        # run shows and fails (divergence.check_finite).
        "logging_nan_inf_filter": False,
        "save_strategy": "steps",
        "save_steps": training.save_steps,
        "save_total_limit": training.save_total_limit,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": training.save_steps,  # a val loss for every checkpoint (W18)
        "gradient_checkpointing": training.gradient_checkpointing,
        "gradient_checkpointing_kwargs": {"use_reentrant": False},
        "use_cpu": not cuda,
        "report_to": "none",
        "disable_tqdm": True,
        "dataloader_pin_memory": cuda,
        "completion_only_loss": None,  # our labels already carry the completion mask
        "assistant_only_loss": False,
        **(parallel_settings(training, cuda, layer_classes) if world_size > 1 else {}),
    }
    return SFTConfig(**{**settings, **overrides})


def parallel_settings(training: TrainingConfig, cuda: bool, layer_classes: list[str] | None) -> dict:
    """Trainer arguments of a data-parallel run: the backend, and DDP's or FSDP's own settings."""
    settings = {
        "ddp_backend": distributed.backend(cuda),
        "ddp_timeout": int(distributed.TIMEOUT.total_seconds()),
        # Every LoRA weight gets a gradient each step: the search for unused ones would be an extra pass per step.
        "ddp_find_unused_parameters": False,
    }
    if training.quantization in EIGHT_BIT_MATMULS:
        # The frozen base lives in buffers (fp8.py, int8.py) that DDP would broadcast from rank 0 before every forward
        # (7.6 GiB e4m3 / 3.8 GiB NF4 for an 8B); every rank built the same bytes, and nothing changes them.
        settings["ddp_broadcast_buffers"] = False
    if training.strategy == "fsdp":
        if not layer_classes:
            raise ValueError("strategy fsdp: the model has no decoder layer class to wrap (no checkpointable layers)")
        settings.update({
            # FSDP2 (transformers 5's default): each parameter is sharded on its own (there is no flat parameter, so
            # use_orig_params is implied), the frozen 4-bit weights included when they are stored in the compute
            # dtype (loading.nf4_config), one FSDP unit per decoder layer.
            "fsdp": True,
            "fsdp_config": {
                "version": 2,
                "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
                "transformer_layer_cls_to_wrap": sorted(layer_classes),
                "cpu_ram_efficient_loading": True,
                "state_dict_type": "FULL_STATE_DICT",  # rank 0 saves an adapter a single GPU can load
                "reshard_after_forward": True,
                # FSDP's own (non-reentrant) checkpointing of the wrapped layers: the Trainer's would all-gather
                # each layer's shards a second time in the backward.
                "activation_checkpointing": training.gradient_checkpointing,
            },
            "gradient_checkpointing": False,
        })
    return settings


def build_trainer(
    model,
    tokenizer,
    training: TrainingConfig,
    train_features: list[Features],
    eval_features: list[Features],
    checkpoints: Path,
    *,
    callbacks: list | None = None,
    sft_overrides: dict | None = None,
):
    """SFTTrainer over pre-tokenised rows with our labels, wrapping the model in LoRA."""
    sac_layers = selective_checkpointing_layers(training)
    activation_offloading = use_activation_offloading(training)
    callbacks = list(callbacks or [])
    if sac_layers != 0:
        # With offloading on, what the layers keep goes to host memory too (kept_offload.py).
        callbacks.append(selective_checkpointing_callback(sac_layers, offload_kept=activation_offloading))
    overrides = {"activation_offloading": activation_offloading, **(sft_overrides or {})}
    if training.packing:
        from bioreview_assets.ml.training.packing import check_packing_keeps_rows_apart

        check_packing_keeps_rows_apart(model)  # before trl packs: a model that would leak across rows is refused
    from datasets import Dataset
    from transformers.trainer_callback import PrinterCallback

    train_ds = Dataset.from_list([f.as_row() for f in train_features])
    eval_ds = Dataset.from_list([f.as_row() for f in eval_features]) if eval_features else None
    trainer = _trainer_class()(
        model=model,
        args=sft_config(training, checkpoints, has_eval=eval_ds is not None, layer_classes=decoder_layer_classes(model),
                        **overrides),
        train_dataset=train_ds,
        eval_dataset=eval_ds,
        processing_class=tokenizer,
        peft_config=lora_config(training),
        callbacks=callbacks,
    )
    if training.strategy == "fsdp" and distributed.current().world_size > 1 and not trainer.is_fsdp_enabled:
        # accelerate runs FSDP on GPUs only: elsewhere the same arguments silently give plain DDP.
        raise RuntimeError("training.strategy=fsdp, but the trainer did not enable FSDP (it needs CUDA GPUs)")
    # With tqdm off the trainer prints every log dict to stdout; progress goes through logging and `progress`.
    trainer.remove_callback(PrinterCallback)
    check_lora_coverage(trainer.model, training.lora)  # before any step: a wrong target list fails in seconds
    if training.quantization in EIGHT_BIT_MATMULS:
        from bioreview_assets.ml.training.frozen_base import convert_base_linears

        # After LoRA wraps the base (bf16 for fp8, NF4 for nf4-fp8 and nf4-int8), before the optimizer exists.
        convert_base_linears(trainer.model, training.quantization)
    if training.input_embeddings_on_host and cuda_available():
        from bioreview_assets.ml.training.activation_memory import move_input_embeddings_to_host

        move_input_embeddings_to_host(trainer.model)  # after the trainer's model.to(device)
    return trainer


def decoder_layer_classes(model) -> list[str]:
    """Class names of the model's checkpointable layers (its decoder layers, and vision blocks where there are)."""
    from transformers.modeling_layers import GradientCheckpointingLayer

    return sorted({type(m).__name__ for m in model.modules() if isinstance(m, GradientCheckpointingLayer)})


def _tokens_in(inputs: dict) -> int:
    """Non-padding tokens of one micro-batch, counted as trl counts them (its count is summed over the ranks)."""
    if "attention_mask" in inputs:
        return int(inputs["attention_mask"].sum())
    return int(inputs["position_ids"].size(1))  # padding-free (packed) batches carry no attention mask


def _trainer_class():
    """SFTTrainer whose resume keeps the LoRA weights in the dtype they were trained in, counting this rank's tokens."""
    from trl import SFTTrainer

    class ResumeSafeSFTTrainer(SFTTrainer):
        rank_train_tokens = 0  # tokens this rank trained on in this process (per-rank tokens/s)

        def training_step(self, model, inputs, *args, **kwargs):
            self.rank_train_tokens += _tokens_in(inputs)
            return super().training_step(model, inputs, *args, **kwargs)

        def _load_from_checkpoint(self, resume_from_checkpoint, model=None):
            # peft's load_adapter upcasts the bf16 LoRA weights of a QLoRA run to fp32: the resumed run would train
            # (and save) in another precision than an uninterrupted one. The optimizer is built after this call.
            dtypes = {name: p.dtype for name, p in self.model.named_parameters() if p.requires_grad}
            super()._load_from_checkpoint(resume_from_checkpoint, model)
            for name, param in self.model.named_parameters():
                if name in dtypes and param.dtype != dtypes[name]:
                    param.data = param.data.to(dtypes[name])

    return ResumeSafeSFTTrainer
