"""Builds dg.Definitions from a config snapshot: assets, checks, schedules, sensors, resources; executor picked by
BIOREVIEW_ENV. The code location's `defs` is built from the configs loaded at import."""

from __future__ import annotations

import dagster as dg

from bioreview_assets.assets import (
    benchmark, concerns, corpus, ensemble, generation, leaderboard, matcher_validation, publish, scoring, training,
)
from bioreview_assets.config import env
from bioreview_assets.config.k8s import K8sConfig
from bioreview_assets.config.loader import load_snapshot
from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.orchestration.automation import SENSORS, build_schedules
from bioreview_assets.orchestration.jobs import JOBS
from bioreview_assets.orchestration.partitions import beta_and_preview_silenced
from bioreview_assets.orchestration.resources import (
    CatalogResource, EmbedderResource, GenerationResource, StorageResource,
)

ASSET_MODULES = [benchmark, corpus, training, generation, concerns, ensemble, matcher_validation, scoring, leaderboard,
                 publish]


def environment() -> str:
    """local (default) or k8s."""
    return env.environment()


def build_assets(snapshot: ConfigSnapshot | None = None) -> list:
    """Every asset, partitioned and shaped from `snapshot` (default: the configs loaded now)."""
    snapshot = snapshot or load_snapshot()
    with beta_and_preview_silenced():
        return [asset for module in ASSET_MODULES for asset in module.build(snapshot)]


def build_resources() -> dict:
    return {"storage": StorageResource(), "embedders": EmbedderResource(), "generation": GenerationResource(),
            "catalog": CatalogResource()}


def build_executor(k8s: K8sConfig):
    if environment() == "k8s":
        from bioreview_assets.orchestration.k8s_execution import k8s_executor

        return k8s_executor(k8s)
    return dg.multiprocess_executor.configured({"max_concurrent": 2})


def build_definitions(snapshot: ConfigSnapshot) -> dg.Definitions:
    """The whole code location for one config snapshot (a test builds one from a temporary config folder)."""
    return dg.Definitions(
        assets=build_assets(snapshot),
        resources=build_resources(),
        executor=build_executor(snapshot.k8s),
        jobs=JOBS,
        sensors=SENSORS,
        schedules=build_schedules(snapshot),
    )


# Every config is loaded and checked for sense and cross-references before the graph is built (no run starts on a
# bad one); the layers below get their parts from this snapshot, never by looking a name up.
SNAPSHOT = load_snapshot()
defs = build_definitions(SNAPSHOT)
