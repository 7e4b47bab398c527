"""QLoRA / LoRA supervised fine-tuning of one model on its SFT corpus (docs/reference.md: reference pipeline §2,
W5, W9, W18, W20).

`train_adapter` is what the adapter asset calls. Layout under `output_dir`:

    checkpoints/run.json                 identity (config/corpus/prompt hash) + library versions of this run
    checkpoints/checkpoint-N/            HF Trainer checkpoint (adapter, optimizer, scheduler, RNG, state)
    checkpoints/checkpoint-N/bioreview_checkpoint.json   written last: marks the checkpoint complete
    adapter/                             final LoRA adapter + tokenizer
    tensorboard/, tracking.json          TensorBoard event files and the MLflow run (ml/tracking.py)
    adapter_meta.json                    what the UI shows and downstream assets check (written last)
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bioreview_assets.ml.runtime_env import library_versions
import bioreview_assets.ml.training.distributed as distributed
from bioreview_assets.ml.training.checkpoints import CheckpointMarker, ResumePoint, prepare_checkpoints, run_identity
from bioreview_assets.ml.training.divergence import check_finite
from bioreview_assets.ml.training.features import featurize_rows, fixed_subset
from bioreview_assets.ml.training.loading import load_training_model
from bioreview_assets.ml.training.metadata import adapter_meta, save_adapter
from bioreview_assets.ml.training.monitoring import Progress, TrainingMonitor, as_callback
from bioreview_assets.ml.training.fused_lora import fused_lora_forward
from bioreview_assets.ml.training.liger import apply_liger
from bioreview_assets.ml.training.precision import cuda_available
from bioreview_assets.ml.training.trainer import build_trainer
from bioreview_assets.store.records import AdapterMeta

if TYPE_CHECKING:  # pydantic stays off the benchmarks' GPU path: the configs are only annotations here
    from bioreview_assets.config.model import ModelConfig
    from bioreview_assets.config.project import TrackingConfig

log = logging.getLogger(__name__)

@dataclass
class TrainingRun:
    """A finished training: the trainer (its model is the in-memory adapter) and the metadata written to disk.

    `trainer` is None for a training on several ranks: it lived in the rank processes (ml/training/launch.py).
    """

    trainer: Any
    meta: AdapterMeta | None  # None on the ranks other than 0


@dataclass
class Featurized:
    """The tokenised train rows and fixed val subset of one training, with what featurising dropped."""

    train: list
    train_stats: Any
    eval: list
    eval_stats: Any


def train_adapter(
    cfg: ModelConfig,
    train_rows: list[dict],
    val_rows: list[dict],
    output_dir: Path,
    *,
    prompt_hash: str,
    corpus_hash: str,
    allow_version_mismatch: bool = False,
    progress: Progress | None = None,
    tracking: TrackingConfig | None = None,
) -> TrainingRun:
    """Train (or resume) the LoRA adapter of `cfg` on the corpus rows.

    Returns the metadata written to adapter_meta.json (`.meta`) and the trainer (tests compare the in-memory adapter
    with the reloaded one). With training.gpus > 1 the same training runs under torchrun on that many ranks.
    """
    from bioreview_assets.ml.models import load_tokenizer, resolve_base_model

    started = time.time()
    output_dir = Path(output_dir)
    check_prompt_hash(train_rows + val_rows, prompt_hash)
    identity = run_identity(cfg, prompt_hash=prompt_hash, corpus_hash=corpus_hash)
    versions = library_versions()
    if cfg.training.gpus > 1:
        from bioreview_assets.ml.training.launch import check_devices, train_on_ranks

        check_devices(cfg.training.gpus, cfg.training.strategy)
        # Built or found here, once: N ranks building one cached base at the same time would race (missing hub
        # weights fail here too). The resume point likewise; every rank featurises the rows itself (worker.py).
        resolve_base_model(cfg)
        resume = prepare_run(cfg, output_dir, identity, versions, allow_version_mismatch=allow_version_mismatch)
        meta = train_on_ranks(cfg, train_rows, val_rows, output_dir, identity=identity, versions=versions,
                              resume=resume, progress=progress, tracking=tracking, started=started)
        return TrainingRun(trainer=None, meta=meta)
    tokenizer = load_tokenizer(cfg)
    featurized = featurize(cfg, tokenizer, train_rows, val_rows)
    resume = prepare_run(cfg, output_dir, identity, versions, allow_version_mismatch=allow_version_mismatch)
    return run_training(cfg, tokenizer, featurized, output_dir, identity=identity, versions=versions, resume=resume,
                        progress=progress, tracking=tracking, started=started)


def featurize(cfg: ModelConfig, tokenizer, train_rows: list[dict], val_rows: list[dict]) -> Featurized:
    """Token ids + completion-only labels of the train rows and the fixed val subset; an error when no row fits."""
    max_length = cfg.training.max_length
    thinking = cfg.prompt.enable_thinking  # the same template switch as at inference (W5)
    train_features, train_stats = featurize_rows(tokenizer, train_rows, max_length, enable_thinking=thinking)
    if not train_features:
        raise ValueError(f"no training row fits max_length={max_length} ({train_stats.dropped_over_length} dropped)")
    eval_features, eval_stats = featurize_rows(
        tokenizer, fixed_subset(val_rows, cfg.training.eval_subset), max_length, enable_thinking=thinking
    )
    return Featurized(train_features, train_stats, eval_features, eval_stats)


def prepare_run(cfg: ModelConfig, output_dir: Path, identity: dict, versions: dict, *,
                allow_version_mismatch: bool) -> ResumePoint:
    """The resume point of this run (guards: identity, library versions, world size); done once, before any rank."""
    resume = prepare_checkpoints(output_dir / "checkpoints", identity, versions,
                                 allow_version_mismatch=allow_version_mismatch, world_size=cfg.training.gpus,
                                 strategy=cfg.training.strategy,
                                 allow_world_size_change=cfg.training.allow_world_size_change)
    # An older adapter_meta.json must not vouch for an adapter this run is about to replace.
    AdapterMeta.remove(output_dir)
    return resume


def run_training(
    cfg: ModelConfig,
    tokenizer,
    featurized: Featurized,
    output_dir: Path,
    *,
    identity: dict,
    versions: dict,
    resume: ResumePoint,
    progress: Progress | None,
    tracking: TrackingConfig | None,
    started: float,
    callbacks: list | None = None,
) -> TrainingRun:
    """Load, train from `resume`, save: the one training of every rank (in-process on one GPU, or a torchrun rank).

    Rank 0 alone writes the adapter, adapter_meta.json, the tracking runs and progress; the other ranks return
    meta None. `callbacks` come before the reporting ones (the workers' test-only fault injection).
    """
    import torch

    from bioreview_assets.ml.models import resolve_base_model
    from bioreview_assets.ml.tracking import Tracker

    ranks = distributed.current()
    checkpoints = output_dir / "checkpoints"
    tracker = (Tracker.start(output_dir, cfg, identity, resumed=resume.path is not None, tracking=tracking)
               if ranks.is_main else None)
    model = load_training_model(cfg, resolve_base_model(cfg))
    liger = apply_liger(model, cfg.training.liger)
    monitor = as_callback(TrainingMonitor, progress, ranks.is_main)
    trainer = build_trainer(
        model,
        tokenizer,
        cfg.training,
        featurized.train,
        featurized.eval,
        checkpoints,
        # The reporting callbacks come last: they write what the monitor adds to each log (tokens/s, GPU memory).
        callbacks=[as_callback(CheckpointMarker, identity, versions, cfg.training.strategy), *(callbacks or []),
                   monitor, *(tracker.callbacks() if tracker else [])],
    )
    if cuda_available():
        torch.cuda.reset_peak_memory_stats()
    with fused_lora_forward(trainer.model):
        train_or_restore(trainer, resume.path)
        if featurized.eval and not _evaluated_at(trainer.state.log_history, trainer.state.global_step):
            trainer.evaluate()  # the final adapter gets a val loss even when the last step was not a save step
    # Every rank's own throughput and memory, gathered before rank 0 writes (a collective: all ranks call it).
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda_available() else None
    per_rank = distributed.gather({"tokens": trainer.rank_train_tokens, "seconds": monitor.train_seconds,
                                   "peak_gpu_memory_gib": peak})
    # FSDP holds each weight in shards: gathering the full adapter is a collective of every rank, rank 0 keeps it.
    state_dict = trainer.accelerator.get_state_dict(trainer.model) if trainer.is_fsdp_enabled else None
    # Every rank holds the same LoRA weights (DDP) or its shards (FSDP): each checks its own and fails alike.
    check_finite(trainer.model, trainer.state.log_history, cfg.name)
    if not ranks.is_main:
        return TrainingRun(trainer=trainer, meta=None)

    save_adapter(trainer.model, tokenizer, output_dir / "adapter", state_dict=state_dict)
    meta = adapter_meta(
        cfg=cfg,
        trainer=trainer,
        identity=identity,
        versions=versions,
        resume=resume,
        train_stats=featurized.train_stats,
        eval_stats=featurized.eval_stats,
        monitor=monitor,
        liger=liger,
        output_dir=output_dir,
        wall_time_s=time.time() - started,
        per_rank=per_rank,
    )
    # The adapter's content identity: what generation logs and the Dagster data version are keyed by.
    from bioreview_assets.store.content_identity import folder_hash  # lazy: the store needs polars (not on GPU boxes)

    meta = meta.replace(weights_hash=folder_hash(output_dir / "adapter"), tracking=tracker.links())
    tracker.finish(trainer, {k: getattr(meta, k) for k in ("final_train_loss", "final_val_loss", "tokens_per_s",
                                                           "peak_gpu_memory_gib", "train_time_s", "wall_time_s")})
    meta.write(output_dir)
    return TrainingRun(trainer=trainer, meta=meta)


def train_or_restore(trainer, checkpoint: Path | None) -> None:
    """Train from scratch or from `checkpoint`; a checkpoint of a finished run is only restored.

    transformers 5.24 trains one step past max_steps when resumed from the last step's checkpoint (it checks the
    limit only after a step), so a run that crashed after its final checkpoint gets its weights back instead.
    """
    if checkpoint is None or not _is_finished(checkpoint):
        trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
        return
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    from transformers import TrainerState

    set_peft_model_state_dict(trainer.model, load_file(str(checkpoint / "adapter_model.safetensors")))
    trainer.state = TrainerState.load_from_json(str(checkpoint / "trainer_state.json"))
    log.info("checkpoint %s is the run's last step: restored, nothing left to train", checkpoint)


def _is_finished(checkpoint: Path) -> bool:
    state = json.loads((checkpoint / "trainer_state.json").read_text())
    return state["global_step"] >= state["max_steps"] > 0


def check_prompt_hash(rows: list[dict], prompt_hash: str) -> None:
    """Every row must come from the prompt builder whose hash the caller passes (W5)."""
    other = {row.get("prompt_hash") for row in rows} - {prompt_hash}
    if other:
        raise ValueError(f"corpus rows carry prompt hashes {sorted(map(str, other))}, expected {prompt_hash}")


def _evaluated_at(log_history: list[dict], step: int) -> bool:
    return any("eval_loss" in entry and entry.get("step") == step for entry in log_history)
