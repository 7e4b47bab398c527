"""What the Dagster UI shows beside a generations partition: counts, parse methods, speed, a preview and the schema."""

from __future__ import annotations

from collections import Counter

import dagster as dg
import polars as pl

from bioreview_assets.core.generated_concern import PARSE_METHODS
from bioreview_assets.core.parsing import PARSER_VERSION
from bioreview_assets.orchestration.ui_metadata import generation_preview, link, table_metadata, without_nulls
from bioreview_assets.services.split_generation import SplitGeneration
from bioreview_assets.store.artifacts import ArtifactStore

GENERATION_COLUMNS = {
    "parse_ok": "at least one concern was parsed from the output",
    "parse_method": "how the output was parsed (json, repaired, line list...) or generation_error",
    "n_concerns": "concerns parsed from the output",
    "completion_tokens": "tokens generated; at max_new_tokens the output was likely cut short",
}


def generation_metadata(store: ArtifactStore, run: SplitGeneration) -> dict:
    """The materialisation metadata of one generations partition (None values left out)."""
    table, summary = run.table, run.summary
    methods = Counter(table["parse_method"].to_list())
    per_source = table.group_by("source").agg(pl.col("n_concerns").mean().round(2)).sort("source")
    return without_nulls({
        "articles": summary["articles"],
        "generated_this_run": run.generated,
        "resume": run.resume,
        "generation_key": run.key_hash,
        "served_weights": dg.MetadataValue.json(run.served_weights),
        "failed_generations": summary["failed"],
        "parse_methods": dg.MetadataValue.json({m: methods.get(m, 0) for m in PARSE_METHODS if methods.get(m)}),
        "parse_success_rate": round(float(table["parse_ok"].mean()), 4) if len(table) else 0.0,
        "parser_version": PARSER_VERSION,
        "concerns_per_article_by_source": dg.MetadataValue.json(dict(per_source.iter_rows())),
        "max_new_tokens": summary["max_new_tokens"],
        "max_new_tokens_source": run.limit_note,
        "outputs_at_token_limit": summary["outputs_at_token_limit"],  # stopped by max_new_tokens: likely cut short
        "seconds_per_article": summary["seconds_per_article"],
        "completion_tokens_per_s": summary["completion_tokens_per_s"],
        "backend": dg.MetadataValue.json(run.backend_info),
        "prompt_hash": run.prompt_hash,
        "preview": generation_preview(table, {a.id: [c.concern_text for c in a.concerns] for a in run.articles}),
        **table_metadata(table.drop("text", "concerns", strict=False), GENERATION_COLUMNS),
        "dagster/row_count": table.height,
        "path": link(store, *run.folder, "generations.parquet"),
    })
