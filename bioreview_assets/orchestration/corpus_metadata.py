"""What the Dagster UI shows beside an sft_corpus partition: corpus statistics, hashes and the rows' schema."""

from __future__ import annotations

import dagster as dg

from bioreview_assets.orchestration.ui_metadata import link, table_metadata
from bioreview_assets.services.sft_corpus import SftCorpus
from bioreview_assets.store.artifacts import ArtifactStore


def corpus_metadata(store: ArtifactStore, corpus_name: str, run: SftCorpus) -> dict:
    """The materialisation metadata of one sft_corpus partition."""
    summary, frame = run.summary, run.frame
    return {
        "rows": len(run.rows),
        "prompt_hash": run.prompt_hash,
        "corpus_hash": run.corpus_hash,
        "corpus": corpus_name,
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
        "path": link(store, *run.folder, "rows.parquet"),
    }
