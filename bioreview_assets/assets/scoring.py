"""scores[system x split]: matcher-identified metrics, per-article matches as parquet, DuckDB views refreshed."""

import dagster as dg
import polars as pl

from bioreview_assets.config.snapshot import ConfigSnapshot
from bioreview_assets.core.hashing import stable_hash
from bioreview_assets.checks.scoring import SCORE_CHECKS, evaluate_score_checks
from bioreview_assets.core.gt_filter import GT_FILTER_VERSION
from bioreview_assets.core.reviewer_ceiling import REVIEWERS_SYSTEM, reviewer_refs
from bioreview_assets.core.scoring import article_refs
from bioreview_assets.orchestration.gpu_tags import embedding_asset_kwargs
from bioreview_assets.services.similarity import score_with_matcher
from bioreview_assets.orchestration.partitions import (
    SPLIT_DIM,
    SYSTEM_DIM,
    keys,
    partitioned_checks,
    same_system_mapping,
    split_to_system_split,
    system_split_partitions,
)
from bioreview_assets.orchestration.resources import CatalogResource, EmbedderResource, StorageResource
from bioreview_assets.store.concern_table import read_concerns
from bioreview_assets.reporting.formatting import labelled_ci, number, record_table, rounded, signed
from bioreview_assets.orchestration.ui_metadata import (
    GLOSSARY, link, glossary, match_preview, png_markdown, table_metadata, without_nulls,
)
from bioreview_assets.store.layout import read_eval_articles, read_split_meta, scores_dir
from bioreview_assets.store.records import AdapterMeta, ScoreRow
from bioreview_assets.store.score_inputs import score_inputs_signature
from bioreview_assets.store.locks import locked_partition
from bioreview_assets.orchestration.configured_here import systems_here_metadata


def track_system_scores(store, project, info, rows: list[ScoreRow]) -> dict | None:
    """Scores of a fine-tuned model's system `info` (a System) logged against its adapter's MLflow run (tracking.mlflow
    on)."""
    if not project.tracking.mlflow or info.kind != "model" or not AdapterMeta.exists_in(store, info.model):
        return None
    from bioreview_assets.services.score_tracking import track_scores

    return track_scores(project.tracking, AdapterMeta.load(store, info.model), rows, policy=info.policy,
                        default_policy=project.default_postprocess, default_matcher=project.default_matcher)


MATCH_COLUMNS = {
    "row_kind": "reference: one row per reference concern (with its matched or nearest generated concern); "
                "generated_only: a generated concern that matched nothing",
    "similarity": "matcher similarity of the pair (for generated_only rows: best similarity to any reference)",
    "matched": "the pair counts as a hit",
}


def score_summary(m: dict, system: str, split: str) -> str:
    """The headline of one score partition in words and numbers (the glossary defines each term)."""
    ci = m.get("ci") or {}
    null = m["null_f1"]
    units = (f"{m['n_articles']} reviewer units of {m['n_clusters']} articles with two or more reviewers (each "
             f"reviewer scored against the others of its article; CI over articles)" if "n_clusters" in m
             else f"{m['n_articles']} articles")
    lines = [
        f"**{system} / {split}**, {units}, {m['n_gt']} reference and {m['n_tool']} generated "
        f"concerns, {m['n_matched']} matched",
        "",
        f"* {labelled_ci('F1', m['f1_micro'], ci.get('f1_micro_ours'))}",
        f"* {labelled_ci('recall', m['recall_micro'], ci.get('recall_micro'))}; "
        f"{labelled_ci('precision', m['precision_micro'], ci.get('precision_micro'))}",
        f"* recall-major {number(m['recall_major'])}",
        f"* null F1 {null:.3f}, F1 above null {signed(m['f1_micro'], null)}" if null is not None
        else "* null F1 not computed",
        f"* count-oracle F1 {number(m['count_oracle_f1'])}",
    ]
    return "\n".join(lines)


def group_table(groups: dict, label: str) -> str:
    rows = [{label: name, "reference": v.get("n_gt"), "generated": v.get("n_tool"), "matched": v.get("n_matched"),
             "recall": v.get("recall", v.get("recall_micro")), "precision": v.get("precision", v.get("precision_micro")),
             "F1": v.get("f1", v.get("f1_micro"))} for name, v in sorted((groups or {}).items())]
    return record_table(rows, [label, "reference", "generated", "matched", "recall", "precision", "F1"])


def build(snapshot: ConfigSnapshot) -> list[dg.AssetsDefinition]:
    """scores, partitioned by every system of `snapshot`, scored with its matchers."""

    @dg.asset(
        partitions_def=system_split_partitions(snapshot),
        deps=[
            dg.AssetDep("concerns", partition_mapping=same_system_mapping(snapshot, lambda s: s.kind != "ensemble")),
            dg.AssetDep("ensemble_concerns",
                        partition_mapping=same_system_mapping(snapshot, lambda s: s.kind == "ensemble")),
            dg.AssetDep("benchmark_split", partition_mapping=split_to_system_split()),
        ],
        check_specs=partitioned_checks(SCORE_CHECKS, system_split_partitions(snapshot)),
        **embedding_asset_kwargs(snapshot),
        metadata=systems_here_metadata(snapshot),
        group_name="scoring",
        kinds={"python", "duckdb", "parquet"},
        description="Micro P/R/F1 with CIs, null baseline and count oracle for every configured matcher; per-article "
                    "matches in DuckDB (views `scores`, `matches`). Its metadata shows the F1 with its CI, a preview "
                    "of generated concerns beside the reference ones, and the matcher's diagnostics.\n\n" + GLOSSARY,
    )
    @locked_partition
    def scores(
        context: dg.AssetExecutionContext, storage: StorageResource, embedders: EmbedderResource,
        catalog: CatalogResource
    ) -> dg.MaterializeResult:
        """Micro P/R/F1 with CIs, null baseline and count oracle for every configured matcher; matches in DuckDB."""
        return materialize_scores(snapshot, context, storage, embedders, catalog)

    return [scores]


def materialize_scores(snapshot: ConfigSnapshot, context: dg.AssetExecutionContext, storage: StorageResource,
                       embedders: EmbedderResource, catalog: CatalogResource) -> dg.MaterializeResult:
    from bioreview_assets.reporting.plots import matcher_diagnostics_png

    part = keys(context)
    system, split = part[SYSTEM_DIM], part[SPLIT_DIM]
    project = snapshot.project
    store = storage.store()
    # Every system of a split is scored on the same articles (all, or the project's eval_max_articles subset).
    articles = read_eval_articles(store, split, snapshot.eval_article_limit(snapshot.system(system).model))
    # The reviewer ceiling scores each reviewer against the others of its article (units clustered by article).
    refs, clusters = reviewer_refs(articles) if system == REVIEWERS_SYSTEM else (article_refs(articles), None)
    predictions = {
        aid: [{"text": c.text, "category": c.category, "severity": c.severity} for c in items]
        for aid, items in read_concerns(store, system, split).items()
    }
    split_hash = read_split_meta(store, split)["content_hash"]
    matchers = snapshot.scored_matchers()
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
    refreshed = catalog.refresh(store)
    tracked = track_system_scores(store, project, snapshot.system(system), rows)
    main = results[project.default_matcher]
    m = main.metrics
    ci = m.get("ci") or {}
    matches = pl.DataFrame(main.matches, infer_schema_length=None)
    return dg.MaterializeResult(
        metadata=without_nulls({
            "f1_with_ci": dg.MetadataValue.text(labelled_ci("F1", m["f1_micro"], ci.get("f1_micro_ours"))),
            "summary": dg.MetadataValue.md(score_summary(m, system, split)),
            "f1": m["f1_micro"], "recall": m["recall_micro"], "precision": m["precision_micro"],
            "recall_major": m["recall_major"], "null_f1": m["null_f1"], "count_oracle_f1": m["count_oracle_f1"],
            "f1_above_null": m["f1_micro"] - m["null_f1"] if None not in (m["f1_micro"], m["null_f1"]) else None,
            "glossary": glossary(),
            "matcher": dg.MetadataValue.json(m["matcher"]),
            "split_hash": split_hash,
            "coverage": dg.MetadataValue.json({k: v for k, v in m["coverage"].items() if "n_articles" in k
                                               or "unknown" in k}),
            "by_matcher_f1": dg.MetadataValue.json(rounded({n: r.metrics["f1_micro"] for n, r in results.items()})),
            "per_source": dg.MetadataValue.md(group_table(m["per_source_micro"], "source")),
            "per_category": dg.MetadataValue.md(group_table(m["per_category_micro"], "category")),
            "preview": match_preview(matches),
            **table_metadata(matches, MATCH_COLUMNS),
            "diagnostics": png_markdown(matcher_diagnostics_png(m, main.histograms, f"{system} / {split}"),
                                        "threshold curve and similarity histogram"),
            "path": link(store, *folder),
            "catalog": refreshed.status,
            **({"mlflow_run_id": tracked["run_id"]} if tracked else {}),
        }),
        # Metrics of every matcher (not when they were computed): the leaderboard goes stale only if a score moved.
        data_version=dg.DataVersion(stable_hash([signature, {n: r.metrics for n, r in results.items()}])),
        check_results=evaluate_score_checks(m, label=f"{system} / {split}"),
    )
