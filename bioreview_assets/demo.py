"""`bioreview demo`: materialise every partition of the embedded default systems, in dependency order."""

from __future__ import annotations

import time
from dataclasses import dataclass

import dagster as dg

from bioreview_assets import settings
from bioreview_assets.partitions import MODEL_DIM, SPLIT_DIM, SYSTEM_DIM, System, all_systems


@dataclass(frozen=True)
class Step:
    assets: tuple[str, ...]
    partition: str | dg.MultiPartitionKey | None
    label: str


def _multi(dims: dict[str, str]) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey(dims)


def demo_systems() -> list[System]:
    """Systems built from the demo models, plus baselines, plus ensembles whose members are all among those."""
    project = settings.load_project()
    model_systems = [s for s in all_systems() if s.kind == "model" and s.model in project.demo_models]
    baselines = [s for s in all_systems() if s.kind == "baseline"]
    names = {s.name for s in model_systems + baselines}
    ensembles = [s for s in all_systems() if s.kind == "ensemble"
                 and set(settings.load_ensemble(s.ensemble).members) <= names]
    return model_systems + baselines + ensembles


def demo_plan() -> list[Step]:
    """The ordered materialisations of the demo: every partition of the embedded default systems."""
    project = settings.load_project()
    steps = [Step(("benchmark_split",), split, f"benchmark_split[{split}]") for split in ("train", "val", "test")]
    for model in project.demo_models:
        if settings.load_model(model).finetune:
            for split in project.corpus_splits:
                steps.append(Step(("sft_corpus",), _multi({MODEL_DIM: model, SPLIT_DIM: split}),
                                  f"sft_corpus[{model}|{split}]"))
            steps.append(Step(("adapter",), model, f"adapter[{model}]"))
            steps.append(Step(("merged_model",), model, f"merged_model[{model}]"))
        for split in project.eval_splits:
            steps.append(Step(("generations",), _multi({MODEL_DIM: model, SPLIT_DIM: split}),
                              f"generations[{model}|{split}]"))
    for system in demo_systems():
        asset = "ensemble_concerns" if system.kind == "ensemble" else "concerns"
        for split in project.eval_splits:
            key = _multi({SYSTEM_DIM: system.name, SPLIT_DIM: split})
            steps.append(Step((asset,), key, f"{asset}[{system.name}|{split}]"))
            steps.append(Step(("scores",), key, f"scores[{system.name}|{split}]"))
    steps.append(Step(("leaderboard",), None, "leaderboard"))
    steps += [Step(("published_adapter",), model, f"published_adapter[{model}]") for model in project.demo_models
              if settings.load_model(model).finetune]  # assembled only: nothing is uploaded without a repo_id
    return steps


def show_progress() -> None:
    """Print the progress lines of training, generation and embedding (step/total, rate, ETA) to the terminal."""
    import logging
    import sys

    from bioreview_assets.progress import LOGGER_NAME

    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_bioreview_demo", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("    %(message)s"))
        handler._bioreview_demo = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo(plan: list[Step] | None = None) -> list[tuple[Step, dg.ExecuteInProcessResult]]:
    """Run the plan against the persistent instance (DAGSTER_HOME) so `make ui` shows the history.

    Each step runs under its stage's named job (jobs.STAGES: train_model, generate, score...), so the Runs page says
    what ran instead of `__ephemeral_asset_job__`; every run is tagged bioreview/demo and bioreview/pipeline.
    """
    from bioreview_assets.definitions import defs
    from bioreview_assets.jobs import job_for

    show_progress()
    instance = dg.DagsterInstance.get()
    plan = plan or demo_plan()
    results = []
    started = time.monotonic()
    for index, step in enumerate(plan, start=1):
        t0 = time.monotonic()
        job = job_for(step.assets)
        print(f"[{index}/{len(plan)}] {step.label} ({job}) ...", flush=True)
        result = defs.resolve_job_def(job).execute_in_process(
            partition_key=step.partition,
            asset_selection=[dg.AssetKey(name) for name in step.assets],
            instance=instance,
            run_config=QUIET,
            tags={"bioreview/demo": "true", "bioreview/pipeline": "demo", "bioreview/step": step.label},
        )
        elapsed = time.monotonic() - t0
        rate = index / (time.monotonic() - started)
        print(f"[{index}/{len(plan)}] {step.label} done in {elapsed:.1f}s ({rate * 60:.1f} steps/min)", flush=True)
        results.append((step, result))
    return results
