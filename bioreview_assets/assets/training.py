"""adapter[model] (QLoRA/LoRA SFT) and merged_model[model] (LoRA merged into a bf16 base for serving)."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.config.model import ModelConfig
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.checks.training import ADAPTER_CHECKS, evaluate_adapter_checks, evaluate_train_loss_fell
from bioreview_assets.orchestration.gpu_tags import gpu_asset_kwargs
from bioreview_assets.orchestration.partitions import model_partitions, model_to_model_split, partitioned_checks
from bioreview_assets.orchestration.resources import StorageResource
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import adapter_dir, merged_dir, read_corpus_rows
from bioreview_assets.store.locks import locked_partition
from bioreview_assets.store.records import MergeMeta
from bioreview_assets.orchestration.ui_metadata import png_markdown, without_nulls
from bioreview_assets.orchestration.configured_here import systems_here_metadata


def not_fine_tuned_note(snapshot: ConfigSnapshot) -> str:
    """Why some partitions of adapter/merged_model can never be built (said in the asset description)."""
    names = [name for name, cfg in snapshot.models.items() if not cfg.finetune]
    if not names:
        return ""
    # Dagster 1.13 maps adapter[model] to generations[model x split] only between equal model dimensions
    # (MultiToSingleDimensionPartitionMapping; StaticPartitionMapping is static-to-static only), so the partition
    # set cannot leave these models out without cutting the adapter -> generations lineage.
    return (f"\n\n**Not built for {', '.join(names)}** (finetune: false: base-model or API systems). Their partitions "
            "exist because the model dimension is shared with generations; materialising one fails at once. See "
            "`systems_here` for the models buildable on this machine.")


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """adapter and merged_model, partitioned by the models of `snapshot`, their GPU pods shaped by its configs."""

    @dg.asset(
        partitions_def=model_partitions(snapshot),
        description="LoRA adapter trained with trl SFT on the model's train corpus (completion-only loss, resumable)."
                    + not_fine_tuned_note(snapshot),
        deps=[dg.AssetDep("sft_corpus", partition_mapping=model_to_model_split())],
        check_specs=partitioned_checks(ADAPTER_CHECKS, model_partitions(snapshot)),
        metadata=systems_here_metadata(snapshot),
        group_name="training",
        kinds={"pytorch", "peft"},
        **gpu_asset_kwargs(snapshot, "training"),
    )
    @locked_partition
    def adapter(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        """LoRA adapter trained with trl SFT on the model's train corpus (completion-only loss, resumable)."""
        return materialize_adapter(snapshot, context, storage)

    @dg.asset(
        partitions_def=model_partitions(snapshot),
        description="The adapter merged into a bf16 (fp32 on CPU) copy of its base model, for serving."
                    + not_fine_tuned_note(snapshot),
        metadata=systems_here_metadata(snapshot),
        deps=["adapter"],
        group_name="training",
        kinds={"pytorch"},
        # Merging runs in one process: a training pod's shape, one GPU.
        **gpu_asset_kwargs(snapshot, "training", gpus=1),
    )
    def merged_model(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        """The adapter merged into a bf16 (fp32 on CPU) copy of its base model, for serving."""
        return materialize_merged_model(snapshot.model(context.partition_key), storage)

    return [adapter, merged_model]


def materialize_adapter(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext,
                        storage: StorageResource) -> dg.MaterializeResult:
    from bioreview_assets.doctor.report import preflight
    from bioreview_assets.services.tokenization import model_prompt
    from bioreview_assets.ml.training import train_adapter
    from bioreview_assets.reporting.plots import loss_curve_png

    model = context.partition_key
    cfg = snapshot.model(model)
    store = storage.store()
    if cfg.probe_of:
        return probe_checkpoint(store, cfg, snapshot.project.tracking)
    if not cfg.finetune:
        raise ValueError(f"model {model!r} has finetune: false (a base-model or API baseline): there is no adapter "
                         f"to train; materialise its generations directly")
    for finding in preflight(cfg, training=True):  # a GPU pod checks itself before loading any weights
        context.log.info(f"doctor: [{finding.level}] {finding.subject}: {finding.message}")
    train_rows, train_meta = read_corpus_rows(store, model, "train")
    val_rows, val_meta = read_corpus_rows(store, model, "val")
    _, prompt_hash, _ = model_prompt(cfg)
    for meta in (train_meta, val_meta):
        if meta["prompt_hash"] != prompt_hash:
            raise ValueError(
                f"sft_corpus[{model}|{meta['split']}] was built with prompt {meta['prompt_hash']}, the prompt builder "
                f"now gives {prompt_hash}: re-materialise sft_corpus for {model} first"
            )
    work = store.local_dir(*adapter_dir(model))

    def progress(event: dict) -> None:
        context.log.info(f"{model}: " + ", ".join(f"{k}={v}" for k, v in event.items()))

    meta = train_adapter(
        cfg,
        train_rows,
        val_rows,
        work,
        prompt_hash=prompt_hash,
        corpus_hash=stable_hash([train_meta["corpus_hash"], val_meta["corpus_hash"]]),
        progress=progress,
        tracking=snapshot.project.tracking,
    ).meta
    published = store.publish_dir(work, *adapter_dir(model))
    modules = {kind: sorted(entry["wrapped"]) for kind, entry in meta.lora_modules.items()}
    return dg.MaterializeResult(
        # None entries (peak GPU memory on CPU, no resume) mean "not measured here": left out, not shown as null.
        metadata=without_nulls({
            "loss_curve": png_markdown(loss_curve_png(meta.loss_history, model), "train/val loss"),
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
            "prompt_hash": prompt_hash,
            "config_hash": cfg.config_hash(),
            "weights_hash": meta.weights_hash,
            "path": published,
            **tracking_metadata(store, published, meta.tracking),
        }),
        # The weights' content hash: a retrain that changes the weights shows merged_model and generations stale.
        data_version=dg.DataVersion(meta.weights_hash),
        check_results=[*evaluate_adapter_checks(meta.val_losses, label=model),
                       evaluate_train_loss_fell(meta.train_losses, cfg.training.loss_fall_fraction,
                                                label=model)],
    )


def tracking_metadata(store: ArtifactStore, published: str, tracking: dict) -> dict:
    """Links to the adapter's TensorBoard run (and MLflow run) for the UI."""
    from bioreview_assets.ml.tracking import TENSORBOARD_DIR, tensorboard_command

    links = {"tensorboard": dg.MetadataValue.path(f"{published}/{TENSORBOARD_DIR}"),
             "tensorboard_command": tensorboard_command(store.url("adapter"))}
    if tracking.get("mlflow"):
        links["mlflow_run_id"] = tracking["mlflow"]["run_id"]
        links["mlflow_tracking_uri"] = tracking["mlflow"]["tracking_uri"]
    return links


def probe_checkpoint(store: ArtifactStore, cfg: ModelConfig, tracking) -> dg.MaterializeResult:
    """A probe's adapter is checkpoint N of its base model's adapter (copied, with the base's provenance)."""
    from bioreview_assets.ml.training.checkpoints import copy_probe_checkpoint

    probe = copy_probe_checkpoint(store, cfg, tracking)
    probe_meta, published = probe.meta, probe.published
    return dg.MaterializeResult(metadata={"probe_of": cfg.probe_of, "step": cfg.probe_step,
                                          "val_loss_at_step": probe_meta.final_val_loss,
                                          "weights_hash": probe_meta.weights_hash, "path": published,
                                          **tracking_metadata(store, published, probe_meta.tracking)},
                                data_version=dg.DataVersion(probe_meta.weights_hash),
                                check_results=[*evaluate_adapter_checks(probe.val_history, label=cfg.name),
                                               # the base run's train losses up to the probed step
                                               evaluate_train_loss_fell(
                                                   [p for p in probe_meta.train_losses
                                                    if p[0] <= cfg.probe_step],
                                                   cfg.training.loss_fall_fraction, label=cfg.name)])


def materialize_merged_model(cfg: ModelConfig, storage: StorageResource) -> dg.MaterializeResult:
    from bioreview_assets.ml.merge import merge_adapter

    model = cfg.name
    if not cfg.finetune:
        raise ValueError(f"model {model!r} has finetune: false: there is no adapter to merge")
    store = storage.store()
    adapter_path = store.fetch_dir(*adapter_dir(model)) / "adapter"
    out = store.local_dir(*merged_dir(model))
    merge_adapter(cfg, adapter_path, out)
    merge_meta = MergeMeta.read(out)
    size = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    published = store.publish_dir(out, *merged_dir(model))
    return dg.MaterializeResult(
        metadata={"path": published, "size_mb": round(size / 2**20, 1), "weights_hash": merge_meta.weights_hash,
                  "adapter_weights_hash": merge_meta.adapter_weights_hash},
        data_version=dg.DataVersion(merge_meta.weights_hash),
    )
