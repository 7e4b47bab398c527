"""scores[system x split]: matcher-identified metrics, per-article matches as parquet, DuckDB views refreshed."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.checks.scoring import SCORE_CHECKS, evaluate_score_checks
from bioreview_assets.orchestration.gpu_tags import embedding_asset_kwargs
from bioreview_assets.orchestration.partitions import (
    SPLIT_DIM,
    SYSTEM_DIM,
    keys,
    partitioned_checks,
    same_system_mapping,
    split_to_system_split,
    system_split_partitions,
)
from bioreview_assets.orchestration.resources import CatalogResource, EmbedderResource, StorageResource
from bioreview_assets.orchestration.score_metadata import score_metadata
from bioreview_assets.orchestration.ui_metadata import GLOSSARY
from bioreview_assets.services.split_scoring import score_split
from bioreview_assets.store.locks import locked_partition
from bioreview_assets.orchestration.configured_here import systems_here_metadata


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """scores, partitioned by every system of `snapshot`, scored with its matchers."""

    @dg.asset(
        partitions_def=system_split_partitions(snapshot),
        deps=[
            dg.AssetDep("concerns", partition_mapping=same_system_mapping(snapshot, lambda s: s.kind != "ensemble")),
            dg.AssetDep("ensemble_concerns",
                        partition_mapping=same_system_mapping(snapshot, lambda s: s.kind == "ensemble")),
            dg.AssetDep("benchmark_split", partition_mapping=split_to_system_split()),
        ],
        check_specs=partitioned_checks(SCORE_CHECKS, system_split_partitions(snapshot)),
        **embedding_asset_kwargs(snapshot),
        metadata=systems_here_metadata(snapshot),
        group_name="scoring",
        kinds={"python", "duckdb", "parquet"},
        description="Micro P/R/F1 with CIs, null baseline and count oracle for every configured matcher; per-article "
                    "matches in DuckDB (views `scores`, `matches`). Its metadata shows the F1 with its CI, a preview "
                    "of generated concerns beside the reference ones, and the matcher's diagnostics.\n\n" + GLOSSARY,
    )
    @locked_partition
    def scores(
        context: dg.AssetExecutionContext, storage: StorageResource, embedders: EmbedderResource,
        catalog: CatalogResource
    ) -> dg.MaterializeResult:
        """Micro P/R/F1 with CIs, null baseline and count oracle for every configured matcher; matches in DuckDB."""
        return materialize_scores(snapshot, context, storage, embedders, catalog)

    return [scores]


def materialize_scores(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext, storage: StorageResource,
                       embedders: EmbedderResource, catalog: CatalogResource) -> dg.MaterializeResult:
    part = keys(context)
    system, split = part[SYSTEM_DIM], part[SPLIT_DIM]
    info = snapshot.system(system)
    store = storage.store()
    run = score_split(store, embedders, snapshot.project, info, split, snapshot.eval_article_limit(info.model),
                      snapshot.scored_matchers(), refresh_catalog=catalog.refresh)
    main = run.results[snapshot.project.default_matcher]
    return dg.MaterializeResult(
        metadata=score_metadata(store, system, split, run, snapshot.project.default_matcher),
        data_version=dg.DataVersion(run.data_version),
        check_results=evaluate_score_checks(main.metrics, label=f"{system} / {split}"),
    )
