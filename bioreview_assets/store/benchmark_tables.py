"""The benchmark split's two tables (articles.parquet, gt_concerns.parquet): their schemas and their one writer."""

from __future__ import annotations

import polars as pl

from bioreview_assets.core.gt_filter import HARNESS_POLICY, filter_article
from bioreview_assets.store.artifacts import ArtifactStore

ARTICLES_FILE = "articles.parquet"
GT_FILE = "gt_concerns.parquet"


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


def write_benchmark_tables(store: ArtifactStore, articles, split: str, *folder: str) -> pl.DataFrame:
    """Write both tables of a split's articles into `folder`; return the articles table (the asset shows it)."""
    table = articles_table(articles, split)
    store.write_parquet(table, *folder, ARTICLES_FILE)
    store.write_parquet(gt_table(articles, split), *folder, GT_FILE)
    return table
