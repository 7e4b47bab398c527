"""Schedules and sensors: a new or changed benchmark split file re-materialises its benchmark_split partition."""

from __future__ import annotations

import json

import dagster as dg

from bioreview_assets.config import env
from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.core.benchmark import content_hash
from bioreview_assets.core.schema import SPLITS
from bioreview_assets.orchestration.jobs import JOBS_BY_NAME
from bioreview_assets.store.benchmark_source import split_file

BENCHMARK_SPLIT = dg.AssetKey("benchmark_split")
DATA_VERSION_TAG = "dagster/data_version"  # where Dagster records MaterializeResult(data_version=...)


def _materialized_hash(instance: dg.DagsterInstance, split: str) -> str | None:
    """The content hash recorded by the latest materialisation of benchmark_split[split], if any."""
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=BENCHMARK_SPLIT, asset_partitions=[split]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    return records[0].asset_materialization.tags.get(DATA_VERSION_TAG)


@dg.sensor(
    job=JOBS_BY_NAME["ingest_split"],
    minimum_interval_seconds=60,
    description="Every minute: hashes each benchmark split file (train/val/test) and requests benchmark_split[split] "
                "when its content differs from the last materialised version (new or edited file). Running by default "
                "on Kubernetes, stopped under `dagster dev`.",
    # Running by default on Kubernetes; locally `dagster dev` would otherwise start runs nobody asked for.
    default_status=(
        dg.DefaultSensorStatus.RUNNING if env.on_kubernetes() else dg.DefaultSensorStatus.STOPPED
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
                    asset_selection=[BENCHMARK_SPLIT],
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


def stale_score_partitions(store, matchers) -> list[tuple[str, str, list[str], str]]:
    """(system, split, changed inputs, new inputs hash) of every stored score whose inputs changed since scoring,
    against the scored matchers' specs `matchers` (the project's, in its order)."""
    from bioreview_assets.store.score_inputs import score_inputs_signature
    from bioreview_assets.core.hashing import stable_hash

    stale = []
    for path in store.glob("scores/*/*/signature.json"):
        system, split = path.split("/")[-3:-1]
        stored = store.read_json("scores", system, split, "signature.json")
        try:
            current = score_inputs_signature(store, system, split, matchers)
        except FileNotFoundError:  # its concerns or split are gone: nothing to re-score against
            continue
        changed = sorted(key for key in current if current[key] != stored.get(key))
        if changed:
            stale.append((system, split, changed, stable_hash(current)))
    return stale


def build_schedules(snapshot: ConfigSnapshot) -> list[dg.ScheduleDefinition]:
    """The nightly re-scoring schedule, comparing stored scores with the matchers of `snapshot`."""
    matchers = snapshot.scored_matchers()

    @dg.schedule(
        cron_schedule="0 4 * * *",
        job=JOBS_BY_NAME["score"],
        description="Nightly at 04:00: re-scores only the scores partitions whose inputs (matcher config, GT filter, "
                    "split file, concerns) changed since they were scored; skips when every partition is up to date. "
                    "Then materialise the leaderboard (job `report`). Running by default on Kubernetes, stopped "
                    "locally.",
        default_status=(
            dg.DefaultScheduleStatus.RUNNING if env.on_kubernetes()
            else dg.DefaultScheduleStatus.STOPPED
        ),
    )
    def rescore_stale_schedule(context: dg.ScheduleEvaluationContext):
        """Nightly: re-materialise only the score partitions whose inputs (matcher, GT filter, split, concerns)
        changed."""
        from bioreview_assets.orchestration.resources import StorageResource

        stale = stale_score_partitions(StorageResource().store(), matchers)
        if not stale:
            return dg.SkipReason("every score partition is up to date")
        return [
            dg.RunRequest(
                run_key=f"rescore:{system}:{split}:{inputs_hash}",  # one run per new input state, however many ticks
                partition_key=dg.MultiPartitionKey({"system": system, "split": split}),
                tags={"bioreview/stale_inputs": ",".join(changed)},
            )
            for system, split, changed, inputs_hash in stale
        ]

    return [rescore_stale_schedule]


SENSORS = [benchmark_split_sensor]
