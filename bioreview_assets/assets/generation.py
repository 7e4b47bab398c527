"""generations[model x split]: the model's raw output for every article, parsed, durable per article."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.checks.generation import GENERATION_CHECKS, evaluate_generation_checks
from bioreview_assets.orchestration.gpu_tags import gpu_asset_kwargs
from bioreview_assets.orchestration.partitions import (
    MODEL_DIM,
    SPLIT_DIM,
    keys,
    model_split_partitions,
    model_to_model_split,
    partitioned_checks,
    split_to_model_split,
)
from bioreview_assets.orchestration.resources import GenerationResource, StorageResource
from bioreview_assets.store.locks import locked_partition
from bioreview_assets.orchestration.generation_metadata import generation_metadata
from bioreview_assets.orchestration.configured_here import systems_here_metadata


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """generations, partitioned by the models of `snapshot`, its GPU pod shaped by their generation settings."""

    @dg.asset(
        partitions_def=model_split_partitions(snapshot),
        deps=[
            dg.AssetDep("adapter", partition_mapping=model_to_model_split()),
            dg.AssetDep("merged_model", partition_mapping=model_to_model_split()),
            dg.AssetDep("benchmark_split", partition_mapping=split_to_model_split()),
        ],
        check_specs=partitioned_checks(GENERATION_CHECKS, model_split_partitions(snapshot)),
        metadata=systems_here_metadata(snapshot),
        group_name="generation",
        kinds={"pytorch", "parquet"},
        **gpu_asset_kwargs(snapshot, "generation"),
    )
    @locked_partition
    def generations(
        context: dg.AssetExecutionContext, storage: StorageResource, generation: GenerationResource
    ) -> dg.MaterializeResult:
        """Raw and parsed concerns for every article of the split; resumes after preemption, retries failures."""
        return materialize_generations(snapshot, context, storage, generation)

    return [generations]


def materialize_generations(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext, storage: StorageResource,
                            generation: GenerationResource) -> dg.MaterializeResult:
    from bioreview_assets.services.split_generation import generate_split

    part = keys(context)
    model, split = part[MODEL_DIM], part[SPLIT_DIM]
    cfg = snapshot.model(model)
    store = storage.store()
    run = generate_split(store, cfg, snapshot.corpus(cfg.corpus), split, snapshot.eval_article_limit(model),
                         backend_for=generation.backend, log=context.log.info)
    return dg.MaterializeResult(
        metadata=generation_metadata(store, run),
        data_version=dg.DataVersion(run.data_version),
        check_results=evaluate_generation_checks(run.table, snapshot.project.parse_failure_max_rate,
                                                 label=f"{model} / {split}"),
    )
