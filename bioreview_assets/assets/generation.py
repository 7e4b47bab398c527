"""generations[model x split]: the model's raw output for every article, parsed, durable per article."""

from collections import Counter

import dagster as dg
import polars as pl

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.checks.generation import GENERATION_CHECKS, evaluate_generation_checks
from bioreview_assets.core.generated_concern import PARSE_METHODS
from bioreview_assets.core.parsing import PARSER_VERSION
from bioreview_assets.core.prompts import build_prompt
from bioreview_assets.orchestration.gpu_tags import gpu_asset_kwargs
from bioreview_assets.orchestration.partitions import (
    MODEL_DIM,
    SPLIT_DIM,
    keys,
    model_split_partitions,
    model_to_model_split,
    partitioned_checks,
    split_to_model_split,
)
from bioreview_assets.orchestration.resources import GenerationResource, StorageResource
from bioreview_assets.store.generation_table import parsed_columns
from bioreview_assets.store.layout import generations_dir, read_articles, read_eval_articles
from bioreview_assets.store.locks import locked_partition
from bioreview_assets.orchestration.ui_metadata import link, generation_preview, table_metadata, without_nulls
from bioreview_assets.orchestration.configured_here import systems_here_metadata


GENERATION_COLUMNS = {
    "parse_ok": "at least one concern was parsed from the output",
    "parse_method": "how the output was parsed (json, repaired, line list...) or generation_error",
    "n_concerns": "concerns parsed from the output",
    "completion_tokens": "tokens generated; at max_new_tokens the output was likely cut short",
}


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """generations, partitioned by the models of `snapshot`, its GPU pod shaped by their generation settings."""

    @dg.asset(
        partitions_def=model_split_partitions(snapshot),
        deps=[
            dg.AssetDep("adapter", partition_mapping=model_to_model_split()),
            dg.AssetDep("merged_model", partition_mapping=model_to_model_split()),
            dg.AssetDep("benchmark_split", partition_mapping=split_to_model_split()),
        ],
        check_specs=partitioned_checks(GENERATION_CHECKS, model_split_partitions(snapshot)),
        metadata=systems_here_metadata(snapshot),
        group_name="generation",
        kinds={"pytorch", "parquet"},
        **gpu_asset_kwargs(snapshot, "generation"),
    )
    @locked_partition
    def generations(
        context: dg.AssetExecutionContext, storage: StorageResource, generation: GenerationResource
    ) -> dg.MaterializeResult:
        """Raw and parsed concerns for every article of the split; resumes after preemption, retries failures."""
        return materialize_generations(snapshot, context, storage, generation)

    return [generations]


def materialize_generations(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext, storage: StorageResource,
                            generation: GenerationResource) -> dg.MaterializeResult:
    from bioreview_assets.doctor.report import preflight
    from bioreview_assets.ml.generation import GenerationRequest
    from bioreview_assets.services.generation_runner import run_generation, summarize
    from bioreview_assets.services.serving import generation_key, resolve_max_new_tokens, resolve_serving
    from bioreview_assets.services.tokenization import model_prompt, token_counter
    from bioreview_assets.store.generation_log import KeyedGenerationLogs

    part = keys(context)
    model, split = part[MODEL_DIM], part[SPLIT_DIM]
    cfg = snapshot.model(model)
    for finding in preflight(cfg, training=False):  # a GPU pod checks itself before loading any weights
        context.log.info(f"doctor: [{finding.level}] {finding.subject}: {finding.message}")
    store = storage.store()
    articles = read_eval_articles(store, split, snapshot.eval_article_limit(model))
    tokenizer, prompt_hash, _ = model_prompt(cfg)
    count = token_counter(tokenizer)
    cfg, limit_note = resolve_max_new_tokens(cfg, snapshot.corpus(cfg.corpus), read_articles(store, "train"), count)
    requests = [
        GenerationRequest(a.id, build_prompt(a, count, cfg.prompt.token_budget, cfg.prompt.version).messages)
        for a in articles
    ]
    serving = resolve_serving(store, cfg, prompt_hash)
    backend = generation.backend(cfg, serving.model_dir, serving.adapter_dir)
    numerics = backend.numerics() if hasattr(backend, "numerics") else None
    key = generation_key(cfg, serving.weights, prompt_hash, numerics)
    folder = generations_dir(model, split)
    # One log per content key: a retrained adapter, new sampling settings or another compute dtype never resume the
    # old outputs.
    log, key_hash, resume = KeyedGenerationLogs(store.url(*folder, "log")).open(key)
    context.log.info(f"{model}/{split}: {resume}")
    generated = 0

    def progress(done: int, pending: int) -> None:
        nonlocal generated
        generated = done
        if done == pending or done % 8 == 0:
            context.log.info(f"{model}/{split}: {done}/{pending} articles generated")

    extra = {"prompt_hash": prompt_hash, "generation_key": key_hash}
    table = run_generation(requests, backend, log, extra_columns=extra, progress=progress)
    sources = {a.id: a.source for a in articles}
    table = parsed_columns(table).with_columns(
        pl.col("article_id").replace_strict(sources, return_dtype=pl.String).alias("source")
    )
    store.write_parquet(table, *folder, "generations.parquet")
    max_new = cfg.generation.max_new_tokens
    truncated = int((table["completion_tokens"] >= max_new).sum()) if len(table) else 0
    summary = {**summarize(table), "max_new_tokens": max_new, "outputs_at_token_limit": truncated}
    backend_info = backend.describe()
    # The raw texts under this key: unchanged outputs keep the version, so nothing downstream looks stale.
    data_version = stable_hash([key_hash, table.select("article_id", "text", "error").rows()])
    store.write_json({"summary": summary, "backend": backend_info, "prompt_hash": prompt_hash,
                      "generation_key": key_hash, "key": key, "resume": resume, "data_version": data_version,
                      "parser_version": PARSER_VERSION}, *folder, "meta.json")
    methods = Counter(table["parse_method"].to_list())
    per_source = table.group_by("source").agg(pl.col("n_concerns").mean().round(2)).sort("source")
    return dg.MaterializeResult(
        metadata=without_nulls({
            "articles": summary["articles"],
            "generated_this_run": generated,
            "resume": resume,
            "generation_key": key_hash,
            "served_weights": dg.MetadataValue.json(serving.weights),
            "failed_generations": summary["failed"],
            "parse_methods": dg.MetadataValue.json({m: methods.get(m, 0) for m in PARSE_METHODS if methods.get(m)}),
            "parse_success_rate": round(float(table["parse_ok"].mean()), 4) if len(table) else 0.0,
            "parser_version": PARSER_VERSION,
            "concerns_per_article_by_source": dg.MetadataValue.json(dict(per_source.iter_rows())),
            "max_new_tokens": max_new,
            "max_new_tokens_source": limit_note,
            "outputs_at_token_limit": truncated,  # stopped by max_new_tokens, not by the model: likely cut short
            "seconds_per_article": summary["seconds_per_article"],
            "completion_tokens_per_s": summary["completion_tokens_per_s"],
            "backend": dg.MetadataValue.json(backend_info),
            "prompt_hash": prompt_hash,
            "preview": generation_preview(table, {a.id: [c.concern_text for c in a.concerns] for a in articles}),
            **table_metadata(table.drop("text", "concerns", strict=False), GENERATION_COLUMNS),
            "dagster/row_count": table.height,
            "path": link(store, *folder, "generations.parquet"),
        }),
        data_version=dg.DataVersion(data_version),
        check_results=evaluate_generation_checks(table, snapshot.project.parse_failure_max_rate,
                                                 label=f"{model} / {split}"),
    )
