"""What the Dagster UI shows beside a benchmark_split partition: its meta, quarantine, sources and articles' schema."""

from __future__ import annotations

from collections import Counter

import dagster as dg

from bioreview_assets.orchestration.ui_metadata import link, table_metadata
from bioreview_assets.services.benchmark_split import BenchmarkSplit
from bioreview_assets.store.artifacts import ArtifactStore


def benchmark_metadata(store: ArtifactStore, run: BenchmarkSplit) -> dict:
    """The materialisation metadata of one benchmark_split partition."""
    this, folder = run.loaded, run.folder
    return {
        **{k: v for k, v in run.meta.items() if k != "quarantine_reasons"},
        "quarantine_reasons": dg.MetadataValue.json(this.quarantine_counts),
        "quarantine_file": link(store, *folder, "quarantine.jsonl"),
        "sources": dg.MetadataValue.json(dict(Counter(a.source for a in this.articles))),
        "n_concerns": sum(len(a.concerns) for a in this.articles),
        **table_metadata(run.articles_table),
        "path": link(store, *folder, "articles.parquet"),
    }
