"""`bioreview demo`: materialise every partition of the embedded default systems, in dependency order."""

from __future__ import annotations

import contextlib
import graphlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import dagster as dg

from bioreview_assets.config import env
from bioreview_assets.config.loader import load_snapshot
from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.config.systems import System
from bioreview_assets.core.schema import SPLITS
from bioreview_assets.orchestration.partitions import MODEL_DIM, SPLIT_DIM, SYSTEM_DIM


@dataclass(frozen=True)
class Step:
    assets: tuple[str, ...]
    partition: str | dg.MultiPartitionKey | None
    label: str


def _multi(dims: dict[str, str]) -> dg.MultiPartitionKey:
    return dg.MultiPartitionKey(dims)


def demo_systems(snapshot: ConfigSnapshot) -> list[System]:
    """Systems built from the demo models, plus baselines, plus ensembles whose members are all among those."""
    project, systems = snapshot.project, snapshot.systems()
    model_systems = [s for s in systems if s.kind == "model" and s.model in project.demo_models]
    baselines = [s for s in systems if s.kind == "baseline"]
    names = {s.name for s in model_systems + baselines}
    ensembles = [s for s in systems if s.kind == "ensemble"
                 and set(snapshot.ensemble(s.ensemble).members) <= names]
    return model_systems + baselines + ensembles


def demo_partitions(snapshot: ConfigSnapshot) -> dict[str, list[tuple[str | dg.MultiPartitionKey | None, str]]]:
    """(partition, label) of every asset the demo materialises: every partition of the embedded default systems."""
    project = snapshot.project
    tuned = [m for m in project.demo_models if snapshot.model(m).finetune]

    def per(models_or_systems, splits, dim):
        return [(_multi({dim: name, SPLIT_DIM: split}), f"{name}|{split}") for name in models_or_systems for split in splits]

    systems = demo_systems(snapshot)
    return {
        "benchmark_split": [(split, split) for split in SPLITS],
        "sft_corpus": per(tuned, project.corpus_splits, MODEL_DIM),
        "adapter": [(model, model) for model in tuned],
        "merged_model": [(model, model) for model in tuned],
        "generations": per(project.demo_models, project.eval_splits, MODEL_DIM),
        "concerns": per([s.name for s in systems if s.kind != "ensemble"], project.eval_splits, SYSTEM_DIM),
        "ensemble_concerns": per([s.name for s in systems if s.kind == "ensemble"], project.eval_splits, SYSTEM_DIM),
        "scores": per([s.name for s in systems], project.eval_splits, SYSTEM_DIM),
        # every matcher the leaderboard is scored with, validated on the labelled pairs (minilm first)
        "matcher_validation": [(name, name) for name in project.matchers],
        "leaderboard": [(None, "")],
        # assembled only: nothing is uploaded without a repo_id
        "published_adapter": [(model, model) for model in tuned],
    }


def asset_order(assets: list) -> list[str]:
    """The asset keys of the graph in dependency order (an asset after everything it reads)."""
    deps = {key.to_user_string(): {dep.to_user_string() for dep in a.asset_deps[key]} for a in assets for key in a.keys}
    return list(graphlib.TopologicalSorter(deps).static_order())


def demo_plan(assets: list | None = None, snapshot: ConfigSnapshot | None = None) -> list[Step]:
    """The ordered materialisations of the demo: each asset of the graph in dependency order, all its partitions
    (assets and partitions built from `snapshot`, by default the configs loaded now)."""
    snapshot = snapshot or load_snapshot()
    if assets is None:
        from bioreview_assets.definitions import build_assets

        assets = build_assets(snapshot)
    wanted = demo_partitions(snapshot)
    order = asset_order(assets)
    missing = sorted(set(order) - set(wanted))
    if missing:
        raise KeyError(f"demo_partitions() says nothing about the assets {missing}: add which partitions the demo builds")
    return [Step((asset,), partition, f"{asset}[{label}]" if label else asset)
            for asset in order for partition, label in wanted[asset]]


def show_progress() -> None:
    """Print the progress lines of training, generation and embedding (step/total, rate, ETA) to the terminal."""
    import logging
    import sys

    from bioreview_assets.core.progress import LOGGER_NAME

    logger = logging.getLogger(LOGGER_NAME)
    if not any(getattr(h, "_bioreview_demo", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("    %(message)s"))
        handler._bioreview_demo = True
        logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def calibrate_and_estimate(snapshot: ConfigSnapshot) -> str:
    """On a CPU: choose the torch thread count by a few seconds of calibration (ml/cpu_calibration.py) and say how
    long the demo should take here and why. BIOREVIEW_TORCH_THREADS=N sets the count instead."""
    import torch

    if torch.cuda.is_available():
        return "GPU present: training and generation run on it (no CPU calibration)"
    from bioreview_assets.core.benchmark import load_split
    from bioreview_assets.core.generation_limits import target_token_limit, target_token_lengths
    from bioreview_assets.core.prompts import build_prompt
    from bioreview_assets.ml.cpu_calibration import calibrate_threads, estimate_demo_minutes
    from bioreview_assets.ml.models import load_tokenizer
    from bioreview_assets.ml.runtime_env import cpu_has_native_bf16
    from bioreview_assets.ml.training.precision import compute_dtype
    from bioreview_assets.store.benchmark_source import split_file

    project = snapshot.project
    tuned = [cfg for cfg in snapshot.project_models(project.demo_models) if cfg.finetune]
    cfg = tuned[0] if tuned else snapshot.model(project.demo_models[0])
    dtype = compute_dtype(cfg.training) if cfg.training else torch.float32
    forced = env.torch_threads()
    cal = calibrate_threads(dtype=dtype)
    if forced:
        torch.set_num_threads(forced)
        cal = type(cal)(forced, cal.decode_ms | ({} if forced in cal.decode_ms else {forced: max(cal.decode_ms.values())}),
                        cal.train_gflops | ({} if forced in cal.train_gflops else {forced: min(cal.train_gflops.values())}))
    tokenizer = load_tokenizer(cfg)
    count = lambda text: len(tokenizer.encode(text, add_special_tokens=False))  # noqa: E731
    train = load_split("train", split_file("train").read()).articles
    val = load_split("val", split_file("val").read()).articles
    lengths = target_token_lengths(train, snapshot.corpus(cfg.corpus), count)
    prompts = [count(build_prompt(a, count, cfg.prompt.token_budget, cfg.prompt.version).messages[-1]["content"])
               for a in val]
    limit = target_token_limit(train, snapshot.corpus(cfg.corpus), count).max_new_tokens
    rows = (cfg.training.max_steps * cfg.training.per_device_batch_size * cfg.training.gradient_accumulation_steps
            if cfg.training else 0)
    runs = len(project.demo_models) * len(project.eval_splits)
    est = estimate_demo_minutes(cal, train_rows=rows * len(tuned) // max(len(tuned), 1),
                                train_tokens_per_row=int(sum(prompts) / len(prompts) + sum(lengths) / len(lengths)),
                                generation_runs=runs, prompt_tokens=max(prompts), articles=len(val),
                                max_new_tokens=limit, dtype=str(dtype).removeprefix("torch."))
    why = ("native bf16 (avx512_bf16/AMX)" if cpu_has_native_bf16()
           else "no avx512_bf16/AMX here: bf16 would be emulated, fp32 is faster")
    return (f"expected on this machine: about {est.total_min:.0f} minutes at most (training {est.training_min:.1f}, "
            f"{runs} generation runs of {len(val)} articles up to {limit} new tokens {est.generation_min:.1f}, "
            f"the rest ~{est.other_min:.0f}); computing in {est.dtype} ({why}); "
            f"{'set by BIOREVIEW_TORCH_THREADS' if forced else 'calibrated'}: {cal.explain()}")


# The steps of minutes (training, generation): the thread count is chosen again before each, since another process's
# load may have come or gone since the start (1 thread beat 2 by 1.5x in training and ~10x in decoding under load).
RECALIBRATE_JOBS = frozenset({"train_model", "generate"})


def recalibrate(snapshot: ConfigSnapshot) -> str:
    """Choose the torch thread count again (CPU only; BIOREVIEW_TORCH_THREADS fixes it) and say so."""
    import torch

    if torch.cuda.is_available():
        return "GPU present: no CPU thread calibration"
    if env.torch_threads():
        torch.set_num_threads(env.torch_threads())
        return f"torch threads {torch.get_num_threads()} (BIOREVIEW_TORCH_THREADS)"
    from bioreview_assets.ml.cpu_calibration import calibrate_threads
    from bioreview_assets.ml.training.precision import compute_dtype

    tuned = [cfg for cfg in snapshot.project_models(snapshot.project.demo_models) if cfg.finetune]
    dtype = compute_dtype(tuned[0].training) if tuned else torch.float32
    return f"calibrated: {calibrate_threads(dtype=dtype).explain()}"


QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def run_demo(plan: list[Step] | None = None, observe: Callable[[Step], contextlib.AbstractContextManager] | None = None,
             stop_on_failure: bool = True) -> list[tuple[Step, dg.ExecuteInProcessResult]]:
    """Run the plan against the persistent instance (DAGSTER_HOME) so `make ui` shows the history.

    `observe(step)`, when given, is a context manager around each step (benchmarks/graph_gpu.py measures GPU memory);
    with stop_on_failure false a failed step is recorded in its result and the plan goes on.

    Each step runs under its stage's named job (jobs.STAGES: train_model, generate, score...), so the Runs page says
    what ran instead of `__ephemeral_asset_job__`; every run is tagged bioreview/demo and bioreview/pipeline.
    """
    from bioreview_assets.definitions import SNAPSHOT, defs
    from bioreview_assets.orchestration.jobs import job_for

    show_progress()
    instance = dg.DagsterInstance.get()
    plan = plan or demo_plan()
    print(f"[calibration] {calibrate_and_estimate(SNAPSHOT)}", flush=True)
    results = []
    started = time.monotonic()
    for index, step in enumerate(plan, start=1):
        t0 = time.monotonic()
        job = job_for(step.assets)
        print(f"[{index}/{len(plan)}] {step.label} ({job}) ...", flush=True)
        if job in RECALIBRATE_JOBS:
            print(f"    {recalibrate(SNAPSHOT)}", flush=True)
        with observe(step) if observe else contextlib.nullcontext():
            result = defs.resolve_job_def(job).execute_in_process(
                partition_key=step.partition,
                asset_selection=[dg.AssetKey(name) for name in step.assets],
                instance=instance,
                run_config=QUIET,
                tags={"bioreview/demo": "true", "bioreview/pipeline": "demo", "bioreview/step": step.label},
                raise_on_error=stop_on_failure,
            )
        elapsed = time.monotonic() - t0
        rate = index / (time.monotonic() - started)
        print(f"[{index}/{len(plan)}] {step.label} done in {elapsed:.1f}s ({rate * 60:.1f} steps/min)", flush=True)
        results.append((step, result))
    return results
