"""sft_corpus[model x split]: chat rows for supervised fine-tuning, built with the model's own tokenizer."""

import json

import dagster as dg
import polars as pl

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.checks.corpus import CORPUS_CHECKS, evaluate_corpus_checks
from bioreview_assets.core.corpus import build_corpus
from bioreview_assets.orchestration.partitions import (
    MODEL_DIM, SPLIT_DIM, keys, model_split_partitions, partitioned_checks, split_to_model_split,
)
from bioreview_assets.orchestration.resources import StorageResource
from bioreview_assets.store.layout import corpus_dir, read_articles, read_split_meta
from bioreview_assets.store.locks import locked_partition
from bioreview_assets.orchestration.ui_metadata import link, table_metadata


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """sft_corpus, partitioned by the models of `snapshot`."""

    @dg.asset(
        partitions_def=model_split_partitions(snapshot),
        deps=[dg.AssetDep("benchmark_split", partition_mapping=split_to_model_split())],
        check_specs=partitioned_checks(CORPUS_CHECKS, model_split_partitions(snapshot)),
        group_name="training",
        kinds={"python", "parquet"},
    )
    @locked_partition
    def sft_corpus(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        """SFT chat rows (system, user, assistant target) for one model and split, with corpus statistics."""
        return materialize_sft_corpus(snapshot, context, storage)

    return [sft_corpus]


def materialize_sft_corpus(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext,
                           storage: StorageResource) -> dg.MaterializeResult:
    from bioreview_assets.services.tokenization import chat_renderer, model_prompt, token_counter

    part = keys(context)
    model, split = part[MODEL_DIM], part[SPLIT_DIM]
    cfg = snapshot.model(model)
    corpus_cfg = snapshot.corpus(cfg.corpus)
    store = storage.store()
    articles = read_articles(store, split)
    tokenizer, prompt_hash, spec = model_prompt(cfg)
    rows, stats = build_corpus(
        articles,
        corpus_cfg,
        token_counter(tokenizer),
        cfg.prompt.token_budget,
        cfg.prompt.version,
        chat_renderer(tokenizer, cfg),
        prompt_hash,
    )
    frame = pl.DataFrame(
        [{**r, "messages": json.dumps(r["messages"], ensure_ascii=False)} for r in rows],
        schema_overrides={"cut_sections": pl.List(pl.String)},
    )
    corpus_hash = stable_hash(frame["text"].to_list())
    folder = corpus_dir(model, split)
    with store.partition(*folder) as staged:  # committed as a unit: all new files or all old ones
        store.write_parquet(frame, *staged, "rows.parquet")
        meta = {
            "model": model,
            "split": split,
            "corpus": corpus_cfg.name,
            "prompt_hash": prompt_hash,
            "prompt_spec": spec,
            "corpus_hash": corpus_hash,
            "split_hash": read_split_meta(store, split)["content_hash"],
            "stats": stats.to_dict(),
        }
        store.write_json(meta, *staged, "meta.json")
    summary = stats.to_dict()
    context.log.info(f"{model}/{split}: kept {summary['kept_articles']}/{summary['total_articles']} articles")
    return dg.MaterializeResult(
        metadata={
            "rows": len(rows),
            "prompt_hash": prompt_hash,
            "corpus_hash": corpus_hash,
            "corpus": corpus_cfg.name,
            "kept_articles": summary["kept_articles"],
            "dropped": dg.MetadataValue.json(summary["dropped"]),
            "concerns_before": summary["concerns_before"],
            "concerns_after": summary["concerns_after"],
            "removed_by_rule": dg.MetadataValue.json(summary["removed_by_rule"]),
            "prompt_tokens": dg.MetadataValue.json(summary["prompt_tokens"]),
            "truncation_rate": round(summary["truncation_rate"], 4),
            "truncation_by_source": dg.MetadataValue.json(summary["truncation_rate_by_source"]),
            "categories": dg.MetadataValue.json(summary["categories"]),
            "severities": dg.MetadataValue.json(summary["severities"]),
            **table_metadata(frame.drop("messages", "text", strict=False)),
            "dagster/row_count": frame.height,
            "path": link(store, *folder, "rows.parquet"),
        },
        check_results=evaluate_corpus_checks(rows, articles, summary, snapshot.project.truncation_warn_rate,
                                             label=f"{model} / {split}"),
        data_version=dg.DataVersion(corpus_hash),
    )
