"""Schedules and sensors: a new or changed benchmark split file re-materialises its benchmark_split partition."""

from __future__ import annotations

import json
import os

import dagster as dg

from bioreview_assets.assets.benchmark import benchmark_split
from bioreview_assets.core.benchmark import content_hash
from bioreview_assets.core.schema import SPLITS
from bioreview_assets.store.benchmark_source import split_file

DATA_VERSION_TAG = "dagster/data_version"  # where Dagster records MaterializeResult(data_version=...)


def _materialized_hash(instance: dg.DagsterInstance, split: str) -> str | None:
    """The content hash recorded by the latest materialisation of benchmark_split[split], if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=benchmark_split.key, asset_partitions=[split]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    return records[0].asset_materialization.tags.get(DATA_VERSION_TAG)


@dg.sensor(
    target=[benchmark_split],
    minimum_interval_seconds=60,
    # Running by default on Kubernetes; locally `dagster dev` would otherwise start runs nobody asked for.
    default_status=(
        dg.DefaultSensorStatus.RUNNING if os.environ.get("BIOREVIEW_ENV") == "k8s" else dg.DefaultSensorStatus.STOPPED
    ),
)
def benchmark_split_sensor(context: dg.SensorEvaluationContext) -> dg.SensorResult:
    """Requests benchmark_split[split] when a split file's content hash differs from the one last seen."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    requests = []
    for split in SPLITS:
        try:
            digest = content_hash(split_file(split).read())
        except FileNotFoundError as err:  # a split being copied in: keep the old hash, look again next tick
            context.log.warning(str(err))
            continue
        # The cursor is empty after a redeploy: the materialised data version then says whether the file is new.
        known = seen.get(split) or _materialized_hash(context.instance, split)
        if digest != known:
            requests.append(
                dg.RunRequest(
                    run_key=f"benchmark_split:{split}:{digest}",  # one run per content, even if the cursor is lost
                    asset_selection=[benchmark_split.key],
                    partition_key=split,
                    tags={"bioreview/content_hash": digest},
                )
            )
        seen[split] = digest
    return dg.SensorResult(
        run_requests=requests,
        cursor=json.dumps(seen, sort_keys=True),
        skip_reason=None if requests else "no new or changed split file",
    )


SENSORS = [benchmark_split_sensor]
SCHEDULES: list[dg.ScheduleDefinition] = []  # the scores re-evaluation schedule goes here
