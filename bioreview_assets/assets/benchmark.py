"""benchmark_split[split]: the validated benchmark split, its quarantine and its content hash."""

from collections import Counter

import dagster as dg
import polars as pl

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.checks.benchmark import BENCHMARK_CHECKS, evaluate_benchmark_checks
from bioreview_assets.core.benchmark import LoadedSplit, check_disjoint, enforce_bad_row_limit, load_split
from bioreview_assets.core.gt_filter import HARNESS_POLICY, filter_article
from bioreview_assets.core.schema import SPLITS
from bioreview_assets.orchestration.partitions import partitioned_checks, split_partitions
from bioreview_assets.orchestration.resources import StorageResource
from bioreview_assets.store.benchmark_source import split_file
from bioreview_assets.store.layout import benchmark_dir
from bioreview_assets.store.locks import locked_partition
from bioreview_assets.orchestration.ui_metadata import link, table_metadata


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """benchmark_split, its limits from `snapshot`."""

    @dg.asset(partitions_def=split_partitions(), check_specs=partitioned_checks(BENCHMARK_CHECKS, split_partitions()),
              group_name="benchmark", kinds={"python", "parquet"})
    @locked_partition
    def benchmark_split(context: dg.AssetExecutionContext, storage: StorageResource) -> dg.MaterializeResult:
        """Validated articles of one benchmark split; bad rows quarantined with line numbers and reasons."""
        return materialize_benchmark_split(snapshot, context, storage)

    return [benchmark_split]


def materialize_benchmark_split(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext,
                                storage: StorageResource) -> dg.MaterializeResult:
    split = context.partition_key
    project = snapshot.project
    store = storage.store()
    folder = benchmark_dir(split)
    source = split_file(split)
    this = load_split(split, source.read(), str(source.path))
    # Written before the bad-row limit is enforced: a failed partition still shows which rows were bad and why.
    store.write_jsonl([q.to_dict() for q in this.quarantined], *folder, "quarantine.jsonl")
    quarantine_file = store.url(*folder, "quarantine.jsonl")
    enforce_bad_row_limit(this, project.max_bad_row_fraction, quarantine_file)
    # Only this partition's own file is validated here; the others are read leniently, for the leakage check only.
    check_disjoint([this, *other_splits(split, context.log)])
    # The partition is committed as a unit: readers see all of the new files or all of the old ones.
    with store.partition(*folder) as staged:
        store.write_jsonl([a.to_row() for a in this.articles], *staged, "articles.jsonl")
        articles_table = _articles_table(this.articles, split)
        store.write_parquet(articles_table, *staged, "articles.parquet")
        store.write_parquet(_gt_table(this.articles, split), *staged, "gt_concerns.parquet")
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
        context.log.warning(f"quarantined {source.path} line {row.line} ({row.reason}): {row.detail}")
    return dg.MaterializeResult(
        metadata={
            **{k: v for k, v in meta.items() if k != "quarantine_reasons"},
            "quarantine_reasons": dg.MetadataValue.json(this.quarantine_counts),
            "quarantine_file": link(store, *folder, "quarantine.jsonl"),
            "sources": dg.MetadataValue.json(dict(Counter(a.source for a in this.articles))),
            "n_concerns": sum(len(a.concerns) for a in this.articles),
            **table_metadata(articles_table),
            "path": link(store, *folder, "articles.parquet"),
        },
        data_version=dg.DataVersion(this.content_hash),
        check_results=evaluate_benchmark_checks(len(this.quarantined), this.quarantine_counts, quarantine_file,
                                                label=split),
    )


def other_splits(split: str, log) -> list[LoadedSplit]:
    """The other split files, loaded without the bad-row limit; an unreadable one is its own partition's error."""
    others = []
    for name in SPLITS:
        if name == split:
            continue
        try:
            source = split_file(name)
            others.append(load_split(name, source.read(), str(source.path)))
        except (OSError, ValueError) as err:
            log.warning(f"benchmark_split[{split}]: cannot check article ids against the {name} split: {err}")
    return others


def _articles_table(articles, split: str) -> pl.DataFrame:
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


def _gt_table(articles, split: str) -> pl.DataFrame:
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
