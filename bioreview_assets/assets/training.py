"""adapter[model] (QLoRA/LoRA SFT) and merged_model[model] (LoRA merged into a bf16 base for serving)."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.config.model import ModelConfig
from bioreview_assets.checks.training import ADAPTER_CHECKS, evaluate_adapter_checks, evaluate_train_loss_fell
from bioreview_assets.orchestration.gpu_tags import gpu_asset_kwargs
from bioreview_assets.orchestration.partitions import model_partitions, model_to_model_split, partitioned_checks
from bioreview_assets.orchestration.resources import StorageResource
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import adapter_dir, merged_dir
from bioreview_assets.store.locks import locked_partition
from bioreview_assets.store.records import MergeMeta
from bioreview_assets.orchestration.adapter_metadata import adapter_metadata, tracking_metadata
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
    @locked_partition
    def merged_model(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        """The adapter merged into a bf16 (fp32 on CPU) copy of its base model, for serving."""
        return materialize_merged_model(snapshot.model(context.partition_key), storage)

    return [adapter, merged_model]


def materialize_adapter(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext,
                        storage: StorageResource) -> dg.MaterializeResult:
    from bioreview_assets.services.adapter_training import train_model_adapter

    cfg = snapshot.model(context.partition_key)
    store = storage.store()
    if cfg.probe_of:
        return probe_checkpoint(store, cfg, snapshot.project.tracking)
    run = train_model_adapter(store, cfg, snapshot.project.tracking, log=context.log.info)
    return dg.MaterializeResult(
        metadata=adapter_metadata(store, cfg, run),
        # The weights' content hash: a retrain that changes the weights shows merged_model and generations stale.
        data_version=dg.DataVersion(run.meta.weights_hash),
        check_results=[*evaluate_adapter_checks(run.meta.val_losses, label=cfg.name),
                       evaluate_train_loss_fell(run.meta.train_losses, cfg.training.loss_fall_fraction,
                                                label=cfg.name)],
    )


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
