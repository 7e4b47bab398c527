"""published_adapter[model]: the adapter as a Hub-ready folder with its model card (uploaded when a repo is named)."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.store.locks import locked_partition
from bioreview_assets.orchestration.partitions import model_partitions
from bioreview_assets.orchestration.resources import StorageResource
from bioreview_assets.store.layout import published_dir


class PublishConfig(dg.Config):
    """Upload target; without repo_id the folder is only assembled. The token comes from HF_TOKEN, never config."""

    repo_id: str | None = None
    private: bool = True


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """published_adapter, partitioned by the models of `snapshot`."""

    @dg.asset(
        partitions_def=model_partitions(snapshot),
        # The card reads the scores of the model's default-policy system; the leaderboard stands for "scored" in the
        # lineage (Dagster maps no system x split partition onto a model partition).
        deps=["adapter", "leaderboard"],
        group_name="training",
        kinds={"huggingface", "peft"},
    )
    @locked_partition
    def published_adapter(
        context: dg.AssetExecutionContext, config: PublishConfig, storage: StorageResource
    ) -> dg.MaterializeResult:
        """Hub-ready adapter folder: weights, tokenizer and chat template, model card with scores; no training state."""
        return materialize_published_adapter(snapshot, context, config, storage)

    return [published_adapter]


def materialize_published_adapter(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext, config: PublishConfig,
                                  storage: StorageResource) -> dg.MaterializeResult:
    from bioreview_assets.services.publish import assemble_published_adapter, upload_published_adapter

    model = context.partition_key
    store = storage.store()
    local = store.local_dir(*published_dir(model))
    published = assemble_published_adapter(store, snapshot.model(model), snapshot.project, local)
    if published.stale_scores:
        context.log.warning(f"{model}: scores of {published.stale_scores} predate this adapter: left out of the card")
    card = (local / "README.md").read_text()
    commit = upload_published_adapter(local, config.repo_id, private=config.private) if config.repo_id else None
    path = store.publish_dir(local, *published_dir(model))
    return dg.MaterializeResult(metadata={
        "path": dg.MetadataValue.path(path),
        "files": dg.MetadataValue.json(published.files),
        "scored_splits": dg.MetadataValue.json(published.scored_splits),
        "stale_scores": dg.MetadataValue.json(published.stale_scores),
        "prompt_shipped": published.prompt_shipped,
        "model_card": dg.MetadataValue.md(card),
        **({"hub_commit": dg.MetadataValue.url(commit), "hub_private": config.private} if commit else {}),
    })
