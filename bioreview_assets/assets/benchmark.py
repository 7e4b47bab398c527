"""benchmark_split[split]: the validated benchmark split, its quarantine and its content hash."""

import dagster as dg

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.checks.benchmark import BENCHMARK_CHECKS, evaluate_benchmark_checks
from bioreview_assets.orchestration.benchmark_metadata import benchmark_metadata
from bioreview_assets.orchestration.partitions import partitioned_checks, split_partitions
from bioreview_assets.orchestration.resources import StorageResource
from bioreview_assets.services.benchmark_split import write_benchmark_split
from bioreview_assets.store.locks import locked_partition


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """benchmark_split, its limits from `snapshot`."""

    @dg.asset(partitions_def=split_partitions(), check_specs=partitioned_checks(BENCHMARK_CHECKS, split_partitions()),
              group_name="benchmark", kinds={"python", "parquet"})
    @locked_partition
    def benchmark_split(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        """Validated articles of one benchmark split; bad rows quarantined with line numbers and reasons."""
        return materialize_benchmark_split(snapshot, context, storage)

    return [benchmark_split]


def materialize_benchmark_split(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext,
                                storage: StorageResource) -> dg.MaterializeResult:
    split = context.partition_key
    store = storage.store()
    run = write_benchmark_split(store, split, snapshot.project.max_bad_row_fraction, warn=context.log.warning)
    this = run.loaded
    return dg.MaterializeResult(
        metadata=benchmark_metadata(store, run),
        data_version=dg.DataVersion(this.content_hash),
        check_results=evaluate_benchmark_checks(len(this.quarantined), this.quarantine_counts, run.quarantine_file,
                                                label=split),
    )
