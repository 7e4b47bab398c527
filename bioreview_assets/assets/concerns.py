"""concerns[system x split]: parsed generations under a post-processing policy, or a baseline's concerns."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.checks.systems import CONCERNS_CHECKS, evaluate_cap
from bioreview_assets.core.parsing import PARSER_VERSION
from bioreview_assets.orchestration.concerns_metadata import concerns_metadata
from bioreview_assets.orchestration.partitions import (
    partitioned_checks,
    SPLIT_DIM,
    SYSTEM_DIM,
    keys,
    model_systems_partitions,
    model_to_system_mapping,
    split_to_system_split,
)
from bioreview_assets.orchestration.resources import EmbedderResource, StorageResource
from bioreview_assets.services.system_concerns import system_concerns
from bioreview_assets.store.locks import locked_partition


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """concerns, partitioned by the model and baseline systems of `snapshot`."""

    @dg.asset(
        partitions_def=model_systems_partitions(snapshot),
        deps=[
            dg.AssetDep("generations", partition_mapping=model_to_system_mapping(snapshot)),
            dg.AssetDep("benchmark_split", partition_mapping=split_to_system_split()),
        ],
        check_specs=partitioned_checks(CONCERNS_CHECKS, model_systems_partitions(snapshot)),
        group_name="systems",
        kinds={"python", "parquet"},
        # A parser change shows every concerns partition stale in the UI; re-materialising re-parses the stored raw
        # text.
        code_version=f"parser-{PARSER_VERSION}",
    )
    @locked_partition
    def concerns(
        context: dg.AssetExecutionContext, storage: StorageResource, embedders: EmbedderResource
    ) -> dg.MaterializeResult:
        """Concerns of one system on one split: a model's parsed output under a policy, or a baseline's."""
        return materialize_concerns(snapshot, context, storage, embedders)

    return [concerns]


def materialize_concerns(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext, storage: StorageResource,
                         embedders: EmbedderResource) -> dg.MaterializeResult:
    part = keys(context)
    system, split = snapshot.system(part[SYSTEM_DIM]), part[SPLIT_DIM]
    policy = None if system.kind == "baseline" else snapshot.postprocess_policy(system.policy)
    run = system_concerns(storage.store(), system, split, snapshot.eval_article_limit(system.model), policy,
                          snapshot.default_matcher(), snapshot.postprocess_policy(snapshot.project.default_postprocess),
                          embedders)
    return dg.MaterializeResult(
        metadata=concerns_metadata(system.name, run),
        # Content plus parser version: a new parser is a new version of these concerns, with its lineage above.
        data_version=dg.DataVersion(stable_hash([run.content_hash, PARSER_VERSION])),
        check_results=evaluate_cap(run.by_article, run.cap, label=f"{system.name} / {split}"),
    )
