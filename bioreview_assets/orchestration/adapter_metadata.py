"""What the Dagster UI shows beside an adapter partition: the loss curve, training figures and tracking links."""

from __future__ import annotations

import dagster as dg

from bioreview_assets.config.model import ModelConfig
from bioreview_assets.orchestration.ui_metadata import png_markdown, without_nulls
from bioreview_assets.services.adapter_training import TrainedAdapter
from bioreview_assets.store.artifacts import ArtifactStore


def adapter_metadata(store: ArtifactStore, cfg: ModelConfig, run: TrainedAdapter) -> dict:
    """The materialisation metadata of a trained adapter."""
    from bioreview_assets.reporting.plots import loss_curve_png

    meta, published = run.meta, run.published
    modules = {kind: sorted(entry["wrapped"]) for kind, entry in meta.lora_modules.items()}
    # None entries (peak GPU memory on CPU, no resume) mean "not measured here": left out, not shown as null.
    return without_nulls({
        "loss_curve": png_markdown(loss_curve_png(meta.loss_history, cfg.name), "train/val loss"),
        "final_train_loss": meta.final_train_loss,
        "final_val_loss": meta.final_val_loss,
        "tokens_per_s": meta.tokens_per_s,
        "world_size": meta.world_size,
        "strategy": meta.strategy,
        "tokens_per_s_per_rank": dg.MetadataValue.json(meta.tokens_per_s_per_rank),
        "peak_gpu_memory_gib": meta.peak_gpu_memory_gib,
        "trainable_params": meta.trainable_params,
        "lora_wrapped_modules": dg.MetadataValue.json(modules),
        "train_rows": meta.train_rows,
        "rows_dropped_over_length": meta.train_rows_dropped_over_length,
        "masked_token_fraction": meta.masked_token_fraction,
        "global_step": meta.global_step,
        "resumed_from_step": meta.resumed_from_step,
        "wall_time_s": meta.wall_time_s,
        "gpu": meta.gpu,
        "library_versions": dg.MetadataValue.json(meta.library_versions),
        "prompt_hash": run.prompt_hash,
        "config_hash": cfg.config_hash(),
        "weights_hash": meta.weights_hash,
        "path": published,
        **tracking_metadata(store, published, meta.tracking),
    })


def tracking_metadata(store: ArtifactStore, published: str, tracking: dict) -> dict:
    """Links to the adapter's TensorBoard run (and MLflow run) for the UI."""
    from bioreview_assets.ml.tracking import TENSORBOARD_DIR, tensorboard_command

    links = {"tensorboard": dg.MetadataValue.path(f"{published}/{TENSORBOARD_DIR}"),
             "tensorboard_command": tensorboard_command(store.url("adapter"))}
    if tracking.get("mlflow"):
        links["mlflow_run_id"] = tracking["mlflow"]["run_id"]
        links["mlflow_tracking_uri"] = tracking["mlflow"]["tracking_uri"]
    return links
