"""generations[model x split]: the model's raw output for every article, parsed, durable per article."""

import json
from collections import Counter

import dagster as dg
import polars as pl

from bioreview_assets import settings
from bioreview_assets.assets.corpus import corpus_policy, model_prompt
from bioreview_assets.checks.generation import GENERATION_CHECKS, evaluate_generation_checks
from bioreview_assets.core.generation_limits import target_token_limit
from bioreview_assets.core.parsing import PARSE_METHODS, parse_concerns
from bioreview_assets.core.prompts import build_prompt
from bioreview_assets.gpu_tags import gpu_asset_kwargs
from bioreview_assets.partitions import (
    MODEL_DIM,
    SPLIT_DIM,
    keys,
    model_split_partitions,
    model_to_model_split,
    split_to_model_split,
)
from bioreview_assets.resources import GenerationResource, StorageResource
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.layout import (
    adapter_dir,
    generations_dir,
    merged_dir,
    read_articles,
    read_eval_articles,
)

PARSER_VERSION = "1"  # bump when core/parsing changes what it returns; stored with every row


class PromptMismatch(ValueError):
    """The adapter was trained on prompts from a different builder/tokenizer/budget than inference would use."""


def serving_dirs(store: ArtifactStore, cfg: settings.ModelConfig, prompt_hash: str):
    """(model_dir, adapter_dir) to generate with: merged weights when configured and present, else base + adapter."""
    from bioreview_assets.ml.models import resolve_base_model

    if cfg.base.kind == "api":
        return None, None
    if not cfg.finetune:
        return resolve_base_model(cfg), None
    adapter_root = store.fetch_dir(*adapter_dir(cfg.name))
    meta = json.loads((adapter_root / "adapter_meta.json").read_text())
    if meta["prompt_hash"] != prompt_hash:
        raise PromptMismatch(
            f"adapter[{cfg.name}] was trained with prompt hash {meta['prompt_hash']} but inference would use "
            f"{prompt_hash}: rebuild the corpus and retrain, or restore the prompt config the adapter was trained with"
        )
    if cfg.generation.use_merged and store.exists(*merged_dir(cfg.name), "config.json"):
        return store.fetch_dir(*merged_dir(cfg.name)), None
    return resolve_base_model(cfg), adapter_root / "adapter"


def parsed_columns(table: pl.DataFrame) -> pl.DataFrame:
    """Parse every raw output (typed parser, explicit method per row)."""
    results = [parse_concerns(text or "") if err is None else None for text, err in zip(table["text"], table["error"])]
    return table.with_columns(
        pl.Series("parse_method", [r.method if r else "generation_error" for r in results]),
        pl.Series("parse_ok", [bool(r and r.ok) for r in results]),
        pl.Series("parse_detail", [r.detail if r else "" for r in results]),
        pl.Series("n_concerns", [len(r.concerns) if r else 0 for r in results], dtype=pl.Int32),
        pl.Series("concerns", [json.dumps([c.to_dict() for c in r.concerns]) if r else "[]" for r in results]),
        pl.lit(PARSER_VERSION).alias("parser_version"),
    )


def resolve_max_new_tokens(cfg: settings.ModelConfig, train_articles, count_tokens):
    """The config with a numeric max_new_tokens ("auto" derived from the train targets) and where it came from."""
    if cfg.generation.max_new_tokens != "auto":
        return cfg, "config"
    limit = target_token_limit(train_articles, corpus_policy(settings.load_corpus(cfg.corpus)), count_tokens)
    generation = cfg.generation.model_copy(update={"max_new_tokens": limit.max_new_tokens})
    return cfg.model_copy(update={"generation": generation}), f"auto: {limit.explain()}"


@dg.asset(
    partitions_def=model_split_partitions(),
    deps=[
        dg.AssetDep("adapter", partition_mapping=model_to_model_split()),
        dg.AssetDep("merged_model", partition_mapping=model_to_model_split()),
        dg.AssetDep("benchmark_split", partition_mapping=split_to_model_split()),
    ],
    check_specs=GENERATION_CHECKS,
    group_name="generation",
    kinds={"pytorch", "parquet"},
    **gpu_asset_kwargs("generation"),
)
def generations(
    context: dg.AssetExecutionContext, storage: StorageResource, generation: GenerationResource
) -> dg.MaterializeResult:
    """Raw and parsed concerns for every article of the split; resumes after preemption, retries failures."""
    from bioreview_assets.ml.generation import GenerationRequest
    from bioreview_assets.ml.generation.runner import run_generation, summarize
    from bioreview_assets.ml.tokenization import token_counter
    from bioreview_assets.store.generation_log import GenerationLog

    part = keys(context)
    model, split = part[MODEL_DIM], part[SPLIT_DIM]
    cfg = settings.load_model(model)
    store = storage.store()
    articles = read_eval_articles(store, split, settings.eval_article_limit(model))
    tokenizer, prompt_hash, _ = model_prompt(cfg)
    count = token_counter(tokenizer)
    cfg, limit_note = resolve_max_new_tokens(cfg, read_articles(store, "train"), count)
    requests = [
        GenerationRequest(a.id, build_prompt(a, count, cfg.prompt.token_budget, cfg.prompt.version).messages)
        for a in articles
    ]
    model_dir, adapter_path = serving_dirs(store, cfg, prompt_hash)
    backend = generation.backend(cfg, model_dir, adapter_path)
    log = GenerationLog(store.url(*generations_dir(model, split), "log"))

    def progress(done: int, pending: int) -> None:
        if done == pending or done % 8 == 0:
            context.log.info(f"{model}/{split}: {done}/{pending} articles generated")

    table = run_generation(requests, backend, log, extra_columns={"prompt_hash": prompt_hash}, progress=progress)
    sources = {a.id: a.source for a in articles}
    table = parsed_columns(table).with_columns(
        pl.col("article_id").replace_strict(sources, return_dtype=pl.String).alias("source")
    )
    folder = generations_dir(model, split)
    store.write_parquet(table, *folder, "generations.parquet")
    max_new = cfg.generation.max_new_tokens
    truncated = int((table["completion_tokens"] >= max_new).sum()) if len(table) else 0
    summary = {**summarize(table), "max_new_tokens": max_new, "outputs_at_token_limit": truncated}
    backend_info = backend.describe()
    store.write_json({"summary": summary, "backend": backend_info, "prompt_hash": prompt_hash}, *folder, "meta.json")
    methods = Counter(table["parse_method"].to_list())
    per_source = table.group_by("source").agg(pl.col("n_concerns").mean().round(2)).sort("source")
    return dg.MaterializeResult(
        metadata={
            "articles": summary["articles"],
            "failed_generations": summary["failed"],
            "parse_methods": dg.MetadataValue.json({m: methods.get(m, 0) for m in PARSE_METHODS if methods.get(m)}),
            "parse_success_rate": round(float(table["parse_ok"].mean()), 4) if len(table) else 0.0,
            "concerns_per_article_by_source": dg.MetadataValue.json(dict(per_source.iter_rows())),
            "max_new_tokens": max_new,
            "max_new_tokens_source": limit_note,
            "outputs_at_token_limit": truncated,  # stopped by max_new_tokens, not by the model: likely cut short
            "seconds_per_article": summary["seconds_per_article"],
            "completion_tokens_per_s": summary["completion_tokens_per_s"],
            "backend": dg.MetadataValue.json(backend_info),
            "prompt_hash": prompt_hash,
            "path": store.url(*folder, "generations.parquet"),
        },
        check_results=evaluate_generation_checks(table, settings.load_project().parse_failure_max_rate),
    )
