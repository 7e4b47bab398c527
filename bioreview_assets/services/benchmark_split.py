"""One benchmark_split partition: a split file validated, its bad rows quarantined, its tables written as a unit."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import polars as pl

from bioreview_assets.core.benchmark import LoadedSplit, check_disjoint, enforce_bad_row_limit, load_split
from bioreview_assets.core.schema import SPLITS
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.benchmark_source import split_file
from bioreview_assets.store.benchmark_tables import write_benchmark_tables
from bioreview_assets.store.layout import benchmark_dir


@dataclass(frozen=True)
class BenchmarkSplit:
    """What a benchmark_split partition wrote, and what its materialisation shows and checks."""

    loaded: LoadedSplit
    meta: dict[str, Any]  # meta.json
    articles_table: pl.DataFrame  # articles.parquet
    folder: tuple[str, ...]
    quarantine_file: str


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
        table = write_benchmark_tables(store, this.articles, split, *staged)
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
