"""Named asset jobs: what the Overview and Runs pages call each stage of the graph (not `__ASSET_JOB`).

A Dagster job runs assets of one partitioning, so one model's evaluation is a chain of stage jobs
(ingest_split -> build_corpus -> train_model -> generate -> postprocess/ensemble -> score -> report); `bioreview demo`
runs each step under its stage's job and tags every run with `bioreview/pipeline`.
"""

from __future__ import annotations

import dagster as dg

# job name -> (assets, description); one partitioning per job.
STAGES: dict[str, tuple[tuple[str, ...], str]] = {
    "ingest_split": (("benchmark_split",), "Validate one benchmark split file (partition: split)"),
    "build_corpus": (("sft_corpus",), "Build a model's SFT rows from one split (partition: model|split)"),
    "train_model": (("adapter", "merged_model"),
                    "Fine-tune one model's LoRA adapter and merge it for serving (partition: model)"),
    "generate": (("generations",), "Generate and parse one model's concerns on one split (partition: model|split)"),
    "postprocess": (("concerns",), "Post-process a system's concerns: dedup, cap (partition: system|split)"),
    "ensemble": (("ensemble_concerns",), "Merge an ensemble's member concerns (partition: ensemble|split)"),
    "score": (("scores",), "Score one system on one split with every matcher (partition: system|split)"),
    "validate_matcher": (("matcher_validation",),
                         "Validate one matcher's 'same concern' decision on labelled pairs (partition: matcher)"),
    "rescore": (("scores", "leaderboard"),
                "Re-score a system x split whose inputs changed, then rebuild the leaderboard (partition: "
                "system|split; target of rescore_stale_schedule)"),
    "report": (("leaderboard",), "Rebuild the leaderboard report from every stored score (unpartitioned)"),
    "publish": (("published_adapter",), "Assemble (and upload, with a repo_id) one model's adapter (partition: "
                                        "model)"),
}
# Which stage job `bioreview demo` runs a step under (the asset it materialises -> job).
JOB_OF_ASSET = {assets[0]: name for name, (assets, _) in STAGES.items() if name != "rescore"}
JOB_OF_ASSET["merged_model"] = "train_model"


def build_jobs() -> list:
    return [
        dg.define_asset_job(name, selection=dg.AssetSelection.assets(*assets), description=description,
                            tags={"bioreview/stage": name})
        for name, (assets, description) in STAGES.items()
    ]


def job_for(assets: tuple[str, ...]) -> str:
    """The stage job a step's assets run under."""
    return JOB_OF_ASSET[assets[0]]


JOBS = build_jobs()  # one object per name: sensors, schedules and Definitions share them
JOBS_BY_NAME = {job.name: job for job in JOBS}
