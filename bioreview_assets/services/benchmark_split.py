"""One benchmark_split partition: a split file validated, its bad rows quarantined, its tables written as a unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import polars as pl

from bioreview_assets.core.benchmark import LoadedSplit, check_disjoint, enforce_bad_row_limit, load_split
from bioreview_assets.core.gt_filter import HARNESS_POLICY, filter_article
from bioreview_assets.core.schema import SPLITS
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.benchmark_source import split_file
from bioreview_assets.store.layout import benchmark_dir


@dataclass(frozen=True)
class BenchmarkSplit:
    """What a benchmark_split partition wrote, and what its materialisation shows and checks."""

    loaded: LoadedSplit
    meta: dict[str, Any]  # meta.json
    articles_table: pl.DataFrame  # articles.parquet
    folder: tuple[str, ...]
    quarantine_file: str


def articles_table(articles, split: str) -> pl.DataFrame:
    return pl.DataFrame(
        [
            {
                "split": split,
                "article_id": a.id,
                "source": a.source,
                "title": a.title,
                "n_concerns": len(a.concerns),
                "n_scorable": len(filter_article(a, HARNESS_POLICY).kept),
                "n_sections": len(a.paper_text_sections),
                "published_date": a.published_date,
            }
            for a in articles
        ],
        schema_overrides={"published_date": pl.Date},
    )


# The full schema, so a split without reference concerns still writes a table with these columns (the DuckDB view
# over every split's gt_concerns.parquet reads them all).
GT_SCHEMA = {"split": pl.String, "article_id": pl.String, "source": pl.String, "concern_id": pl.String,
             "reviewer_num": pl.Int64, "text": pl.String, "category": pl.String, "severity": pl.String,
             "resolution_confidence": pl.Float64, "requires_figure_reading": pl.Boolean}


def gt_table(articles, split: str) -> pl.DataFrame:
    rows = [
        {
            "split": split,
            "article_id": a.id,
            "source": a.source,
            "concern_id": c.concern_id,
            "reviewer_num": c.reviewer_num,
            "text": c.concern_text,
            "category": c.category,
            "severity": c.severity,
            "resolution_confidence": c.resolution_confidence,
            "requires_figure_reading": c.requires_figure_reading,
        }
        for a in articles
        for c in a.concerns
    ]
    return pl.DataFrame(rows, schema=GT_SCHEMA)


def other_splits(split: str, warn: Callable[[str], None]) -> list[LoadedSplit]:
    """The other split files, loaded without the bad-row limit; an unreadable one is its own partition's error."""
    others = []
    for name in SPLITS:
        if name == split:
            continue
        try:
            source = split_file(name)
            others.append(load_split(name, source.read(), str(source.path)))
        except (OSError, ValueError) as err:
            warn(f"benchmark_split[{split}]: cannot check article ids against the {name} split: {err}")
    return others


def write_benchmark_split(store: ArtifactStore, split: str, max_bad_row_fraction: float,
                          warn: Callable[[str], None]) -> BenchmarkSplit:
    """Validate the split's file (bad-row limit, ids disjoint from the other splits) and write its articles, reference
    concerns, quarantine and meta; `warn` receives the quarantined rows and unreadable other splits."""
    folder = benchmark_dir(split)
    source = split_file(split)
    this = load_split(split, source.read(), str(source.path))
    # Written before the bad-row limit is enforced: a failed partition still shows which rows were bad and why.
    store.write_jsonl([q.to_dict() for q in this.quarantined], *folder, "quarantine.jsonl")
    quarantine_file = store.url(*folder, "quarantine.jsonl")
    enforce_bad_row_limit(this, max_bad_row_fraction, quarantine_file)
    # Only this partition's own file is validated here; the others are read leniently, for the leakage check only.
    check_disjoint([this, *other_splits(split, warn)])
    # The partition is committed as a unit: readers see all of the new files or all of the old ones.
    with store.partition(*folder) as staged:
        store.write_jsonl([a.to_row() for a in this.articles], *staged, "articles.jsonl")
        table = articles_table(this.articles, split)
        store.write_parquet(table, *staged, "articles.parquet")
        store.write_parquet(gt_table(this.articles, split), *staged, "gt_concerns.parquet")
        meta = {
            "split": split,
            "content_hash": this.content_hash,
            "source_file": str(source.path),
            "is_sample": source.is_sample,
            "n_articles": len(this.articles),
            "n_quarantined": len(this.quarantined),
            "quarantine_reasons": this.quarantine_counts,
        }
        store.write_json(meta, *staged, "meta.json")
        store.write_jsonl([q.to_dict() for q in this.quarantined], *staged, "quarantine.jsonl")
    for row in this.quarantined[:20]:
        warn(f"quarantined {source.path} line {row.line} ({row.reason}): {row.detail}")
    return BenchmarkSplit(loaded=this, meta=meta, articles_table=table, folder=folder, quarantine_file=quarantine_file)
