"""sft_corpus[model x split]: chat rows for supervised fine-tuning, built with the model's own tokenizer."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.checks.corpus import CORPUS_CHECKS, evaluate_corpus_checks
from bioreview_assets.orchestration.corpus_metadata import corpus_metadata
from bioreview_assets.orchestration.partitions import (
    MODEL_DIM, SPLIT_DIM, keys, model_split_partitions, partitioned_checks, split_to_model_split,
)
from bioreview_assets.orchestration.resources import StorageResource
from bioreview_assets.store.locks import locked_partition


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """sft_corpus, partitioned by the models of `snapshot`."""

    @dg.asset(
        partitions_def=model_split_partitions(snapshot),
        deps=[dg.AssetDep("benchmark_split", partition_mapping=split_to_model_split())],
        check_specs=partitioned_checks(CORPUS_CHECKS, model_split_partitions(snapshot)),
        group_name="training",
        kinds={"python", "parquet"},
    )
    @locked_partition
    def sft_corpus(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        """SFT chat rows (system, user, assistant target) for one model and split, with corpus statistics."""
        return materialize_sft_corpus(snapshot, context, storage)

    return [sft_corpus]


def materialize_sft_corpus(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext,
                           storage: StorageResource) -> dg.MaterializeResult:
    from bioreview_assets.services.sft_corpus import build_sft_corpus

    part = keys(context)
    model, split = part[MODEL_DIM], part[SPLIT_DIM]
    cfg = snapshot.model(model)
    corpus_cfg = snapshot.corpus(cfg.corpus)
    store = storage.store()
    run = build_sft_corpus(store, cfg, corpus_cfg, split, log=context.log.info)
    return dg.MaterializeResult(
        metadata=corpus_metadata(store, corpus_cfg.name, run),
        check_results=evaluate_corpus_checks(run.rows, run.articles, run.summary,
                                             snapshot.project.truncation_warn_rate, label=f"{model} / {split}"),
        data_version=dg.DataVersion(run.corpus_hash),
    )
