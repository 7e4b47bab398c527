"""What the Dagster UI shows beside a scores partition: the F1 with its CI in words, per-group tables, a preview of
matches, the matcher's diagnostics."""

from __future__ import annotations

import dagster as dg
import polars as pl

from bioreview_assets.orchestration.ui_metadata import (
    glossary, link, match_preview, png_markdown, table_metadata, without_nulls,
)
from bioreview_assets.reporting.formatting import labelled_ci, number, record_table, rounded, signed
from bioreview_assets.services.split_scoring import SplitScores
from bioreview_assets.store.artifacts import ArtifactStore

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


def score_metadata(store: ArtifactStore, system: str, split: str, run: SplitScores, default_matcher: str) -> dict:
    """The materialisation metadata of one scores partition, headlined by the default matcher's score."""
    from bioreview_assets.reporting.plots import matcher_diagnostics_png

    results = run.results
    main = results[default_matcher]
    m = main.metrics
    ci = m.get("ci") or {}
    matches = pl.DataFrame(main.matches, infer_schema_length=None)
    tracked = run.tracked
    return without_nulls({
        "f1_with_ci": dg.MetadataValue.text(labelled_ci("F1", m["f1_micro"], ci.get("f1_micro_ours"))),
        "summary": dg.MetadataValue.md(score_summary(m, system, split)),
        "f1": m["f1_micro"], "recall": m["recall_micro"], "precision": m["precision_micro"],
        "recall_major": m["recall_major"], "null_f1": m["null_f1"], "count_oracle_f1": m["count_oracle_f1"],
        "f1_above_null": m["f1_micro"] - m["null_f1"] if None not in (m["f1_micro"], m["null_f1"]) else None,
        "glossary": glossary(),
        "matcher": dg.MetadataValue.json(m["matcher"]),
        "split_hash": run.split_hash,
        "coverage": dg.MetadataValue.json({k: v for k, v in m["coverage"].items() if "n_articles" in k
                                           or "unknown" in k}),
        "by_matcher_f1": dg.MetadataValue.json(rounded({n: r.metrics["f1_micro"] for n, r in results.items()})),
        "per_source": dg.MetadataValue.md(group_table(m["per_source_micro"], "source")),
        "per_category": dg.MetadataValue.md(group_table(m["per_category_micro"], "category")),
        "preview": match_preview(matches),
        **table_metadata(matches, MATCH_COLUMNS),
        "diagnostics": png_markdown(matcher_diagnostics_png(m, main.histograms, f"{system} / {split}"),
                                    "threshold curve and similarity histogram"),
        "path": link(store, *run.folder),
        "catalog": run.catalog_status,
        **({"mlflow_run_id": tracked["run_id"]} if tracked else {}),
    })
