"""Builds dg.Definitions: assets, checks, schedules, sensors, resources; executor picked by BIOREVIEW_ENV."""

from __future__ import annotations

import dagster as dg

from bioreview_assets.config import env
from bioreview_assets.assets import (
    benchmark, concerns, corpus, ensemble, generation, leaderboard, matcher_validation, publish, scoring, training,
)
from bioreview_assets.orchestration.automation import SCHEDULES, SENSORS
from bioreview_assets.config.checks import check_configs
from bioreview_assets.orchestration.jobs import JOBS
from bioreview_assets.orchestration.resources import CatalogResource, EmbedderResource, GenerationResource, StorageResource

ASSET_MODULES = [benchmark, corpus, training, generation, concerns, ensemble, matcher_validation, scoring, leaderboard,
                 publish]


def environment() -> str:
    """local (default) or k8s."""
    return env.environment()


def build_assets() -> list:
    return dg.load_assets_from_modules(ASSET_MODULES)


def build_resources() -> dict:
    return {"storage": StorageResource(), "embedders": EmbedderResource(), "generation": GenerationResource(),
            "catalog": CatalogResource()}


def build_executor():
    if environment() == "k8s":
        from bioreview_assets.orchestration.k8s_execution import k8s_executor

        return k8s_executor()
    return dg.multiprocess_executor.configured({"max_concurrent": 2})


# Every config is checked for sense and cross-references before the graph is built (no run starts on a bad one).
check_configs()

defs = dg.Definitions(
    assets=build_assets(),
    resources=build_resources(),
    executor=build_executor(),
    jobs=JOBS,
    sensors=SENSORS,
    schedules=SCHEDULES,
)
