"""Where each asset's artefacts live under the storage root (<asset>/<system>/<split>/...), and typed readers."""

from __future__ import annotations

import json

from bioreview_assets.core.schema import Article
from bioreview_assets.store.artifacts import ArtifactStore, CorruptArtifact


def benchmark_dir(split: str) -> tuple[str, ...]:
    return ("benchmark", split)


def corpus_dir(model: str, split: str) -> tuple[str, ...]:
    return ("sft_corpus", model, split)


def adapter_dir(model: str) -> tuple[str, ...]:
    return ("adapter", model)


def merged_dir(model: str) -> tuple[str, ...]:
    return ("merged_model", model)


def published_dir(model: str) -> tuple[str, ...]:
    return ("published_adapter", model)


def generations_dir(model: str, split: str) -> tuple[str, ...]:
    return ("generations", model, split)


def concerns_dir(system: str, split: str) -> tuple[str, ...]:
    return ("concerns", system, split)


def scores_dir(system: str, split: str) -> tuple[str, ...]:
    return ("scores", system, split)


REPORT_DIR = ("reports",)  # the leaderboard report: markdown, JSON, plots, paired differences


def read_articles(store: ArtifactStore, split: str) -> list[Article]:
    """The validated articles of a split, as written by benchmark_split."""
    if not store.exists(*benchmark_dir(split), "articles.jsonl"):
        raise FileNotFoundError(
            f"benchmark split {split!r} is not materialised under {store.root}; materialise benchmark_split[{split}]"
        )
    articles = [Article.model_validate(row) for row in store.read_jsonl(*benchmark_dir(split), "articles.jsonl")]
    has_meta = store.exists(*benchmark_dir(split), "meta.json")
    expected = read_split_meta(store, split).get("n_articles") if has_meta else None
    if expected is not None and len(articles) != expected:  # a file cut at a line boundary still parses
        raise CorruptArtifact(f"{store.url(*benchmark_dir(split), 'articles.jsonl')}: {len(articles)} articles, but "
                              f"its meta.json says {expected}: re-materialise benchmark_split[{split}]")
    return articles


def read_eval_articles(store: ArtifactStore, split: str, limit: int | None) -> list[Article]:
    """The articles a system is generated and scored on: the first `limit` of the split (all when None)."""
    articles = read_articles(store, split)
    return articles[:limit] if limit else articles


def read_split_meta(store: ArtifactStore, split: str) -> dict:
    return store.read_json(*benchmark_dir(split), "meta.json")


def read_corpus_rows(store: ArtifactStore, model: str, split: str) -> tuple[list[dict], dict]:
    """Corpus rows (messages decoded) and the corpus meta of one model x split."""
    folder = corpus_dir(model, split)
    if not store.exists(*folder, "meta.json"):
        raise FileNotFoundError(f"sft_corpus[{model}|{split}] is not materialised under {store.root}")
    frame = store.read_parquet(*folder, "rows.parquet")
    rows = [{**row, "messages": json.loads(row["messages"])} for row in frame.iter_rows(named=True)]
    return rows, store.read_json(*folder, "meta.json")
