"""`bioreview demo`: materialise every partition of the embedded default systems, in dependency order."""

from __future__ import annotations

import time
from dataclasses import dataclass

import dagster as dg

from bioreview_assets import settings
from bioreview_assets.partitions import MODEL_DIM, SPLIT_DIM


@dataclass(frozen=True)
class Step:
    assets: tuple[str, ...]
    partition: str | dg.MultiPartitionKey | None
    label: str


def demo_plan() -> list[Step]:
    """The ordered materialisations of the demo (what exists in the graph so far)."""
    project = settings.load_project()
    steps = [Step(("benchmark_split",), split, f"benchmark_split[{split}]") for split in ("train", "val", "test")]
    for model in project.demo_models:
        for split in project.corpus_splits:
            key = dg.MultiPartitionKey({MODEL_DIM: model, SPLIT_DIM: split})
            steps.append(Step(("sft_corpus",), key, f"sft_corpus[{model}|{split}]"))
    return steps


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo(plan: list[Step] | None = None) -> list[dg.ExecuteInProcessResult]:
    """Run the plan against the persistent instance (DAGSTER_HOME) so `make ui` shows the history."""
    from bioreview_assets.definitions import build_assets, build_resources

    assets, resources = build_assets(), build_resources()
    instance = dg.DagsterInstance.get()
    plan = plan or demo_plan()
    results = []
    started = time.monotonic()
    for index, step in enumerate(plan, start=1):
        t0 = time.monotonic()
        print(f"[{index}/{len(plan)}] {step.label} ...", flush=True)
        result = dg.materialize(
            assets,
            selection=list(step.assets),
            partition_key=step.partition,
            instance=instance,
            resources=resources,
            run_config=QUIET,
            tags={"bioreview/demo": "true"},
        )
        elapsed = time.monotonic() - t0
        rate = index / (time.monotonic() - started)
        print(f"[{index}/{len(plan)}] {step.label} done in {elapsed:.1f}s ({rate * 60:.1f} steps/min)", flush=True)
        results.append(result)
    return results
