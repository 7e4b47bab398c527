"""One scores partition: a system's concerns on a split scored with every matcher, written as a unit, tracked."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import polars as pl

from bioreview_assets.config.project import ProjectConfig
from bioreview_assets.config.systems import System
from bioreview_assets.core.gt_filter import GT_FILTER_VERSION
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.core.matcher_spec import MatcherSpec
from bioreview_assets.core.reviewer_ceiling import REVIEWERS_SYSTEM, reviewer_refs
from bioreview_assets.core.scoring import article_refs
from bioreview_assets.services.similarity import score_with_matcher
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.concern_table import read_concerns
from bioreview_assets.store.layout import read_eval_articles, read_split_meta, scores_dir
from bioreview_assets.store.records import AdapterMeta, ScoreRow
from bioreview_assets.store.score_inputs import score_inputs_signature


@dataclass(frozen=True)
class SplitScores:
    """What a scores partition wrote (per matcher), and what its materialisation shows."""

    results: dict[str, Any]  # matcher name -> its score (metrics, articles, matches, histograms)
    folder: tuple[str, ...]
    split_hash: str
    catalog_status: Any  # the catalog refresh's status
    tracked: dict | None  # the MLflow run the scores were logged to, if any
    data_version: str


def track_system_scores(store, project, info, rows: list[ScoreRow]) -> dict | None:
    """Scores of a fine-tuned model's system `info` (a System) logged against its adapter's MLflow run (tracking.mlflow
    on)."""
    if not project.tracking.mlflow or info.kind != "model" or not AdapterMeta.exists_in(store, info.model):
        return None
    from bioreview_assets.services.score_tracking import track_scores

    return track_scores(project.tracking, AdapterMeta.load(store, info.model), rows, policy=info.policy,
                        default_policy=project.default_postprocess, default_matcher=project.default_matcher)


def score_split(store: ArtifactStore, embedders, project: ProjectConfig, info: System, split: str,
                eval_article_limit: int | None, matchers: list[MatcherSpec],
                refresh_catalog: Callable[[ArtifactStore], Any]) -> SplitScores:
    """Score system `info` on the split with every matcher; write rows, articles, matches, metrics and signature as one
    partition, refresh the catalog with `refresh_catalog`, and log the rows to the adapter's MLflow run."""
    system = info.name
    # Every system of a split is scored on the same articles (all, or the project's eval_max_articles subset).
    articles = read_eval_articles(store, split, eval_article_limit)
    # The reviewer ceiling scores each reviewer against the others of its article (units clustered by article).
    refs, clusters = reviewer_refs(articles) if system == REVIEWERS_SYSTEM else (article_refs(articles), None)
    predictions = {
        aid: [{"text": c.text, "category": c.category, "severity": c.severity} for c in items]
        for aid, items in read_concerns(store, system, split).items()
    }
    split_hash = read_split_meta(store, split)["content_hash"]
    results = {spec.name: score_with_matcher(embedders, spec, refs, predictions, project.bootstrap_n, clusters)
               for spec in matchers}
    folder = scores_dir(system, split)
    tag = {"system": system, "split": split}
    rows = [ScoreRow.from_metrics(r.metrics, system=system, split=split, matcher=n, split_hash=split_hash,
                                  gt_filter=GT_FILTER_VERSION) for n, r in results.items()]
    with store.partition(*folder) as staged:  # committed as a unit: all new files or all old ones
        ScoreRow.write(store, rows, *staged)
        store.write_parquet(
            pl.DataFrame([{**tag, "matcher": n, **row} for n, r in results.items() for row in r.articles],
                         infer_schema_length=None),
            *staged, "articles.parquet",
        )
        store.write_parquet(
            pl.DataFrame([{**tag, "matcher": n, **row} for n, r in results.items() for row in r.matches],
                          infer_schema_length=None),
            *staged, "matches.parquet",
        )
        store.write_json({n: r.metrics for n, r in results.items()}, *staged, "metrics.json")
        signature = score_inputs_signature(store, system, split, matchers)
        store.write_json(signature, *staged, "signature.json")
    refreshed = refresh_catalog(store)
    tracked = track_system_scores(store, project, info, rows)
    # Metrics of every matcher (not when they were computed): the leaderboard goes stale only if a score moved.
    data_version = stable_hash([signature, {n: r.metrics for n, r in results.items()}])
    return SplitScores(results=results, folder=folder, split_hash=split_hash, catalog_status=refreshed.status,
                       tracked=tracked, data_version=data_version)
