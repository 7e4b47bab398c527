"""Paired comparisons on the leaderboard: does system A beat system B on the same articles (paired bootstrap)?"""

from __future__ import annotations

import polars as pl

from bioreview_assets.core.baselines import BM25, CHECKLIST
from bioreview_assets.core.metrics import paired_bootstrap_f1

PAIRED_COLUMNS = ["split", "comparison", "system_a", "system_b", "f1_a", "f1_b", "diff", "diff_ci_lo", "diff_ci_hi",
                  "share_not_above_zero", "outcome", "n_articles"]


def comparison_pairs(project, models, ensembles) -> list[tuple[str, str, str | tuple[str, ...]]]:
    """(comparison, A, B or B's candidates): fine-tuned vs base and vs the retrieval/checklist baselines, each
    ensemble vs its best member (candidates: the members; the best on each split is chosen by F1).

    project: the ProjectConfig; models: the ModelConfigs of its models; ensembles: its EnsembleConfigs.
    """
    from bioreview_assets.reporting.verdict import fine_tuned_pairs

    pairs: list[tuple[str, str, str | tuple[str, ...]]] = []
    for tuned, base in fine_tuned_pairs(models):
        pairs.append(("fine-tuned vs base", tuned, base))
        pairs += [(f"fine-tuned vs {name}", tuned, name) for name in (BM25, CHECKLIST) if name in project.baselines]
    for ensemble in ensembles:
        pairs.append(("ensemble vs best member", ensemble.name, tuple(ensemble.members)))
    return pairs


def load_article_scores(store) -> pl.DataFrame:
    """Every stored per-article score row (all systems, splits and matchers)."""
    paths = store.glob("scores/*/*/articles.parquet")
    if not paths:
        return pl.DataFrame()
    return pl.concat([store.read_parquet(*store.parts_of(p)) for p in paths], how="diagonal_relaxed")


def paired_table(articles: pl.DataFrame, board: pl.DataFrame, pairs, matcher: str, n: int = 1000,
                 seed: int = 42) -> pl.DataFrame:
    """One row per comparison and split whose two systems are scored on it (under one matcher)."""
    if articles.is_empty() or board.is_empty():
        return pl.DataFrame()
    rows = []
    table = articles.filter(pl.col("matcher") == matcher)
    for split in board["split"].unique(maintain_order=True).to_list():
        on_split = board.filter(pl.col("split") == split)
        f1_of = dict(zip(on_split["system"].to_list(), on_split["f1"].to_list()))
        for comparison, a, b in pairs:
            if isinstance(b, tuple):  # the best member on this split (ties: the first member named)
                scored = [m for m in b if m in f1_of]
                b = max(scored, key=lambda m: f1_of[m]) if scored else None
            if a not in f1_of or b is None or b not in f1_of:
                continue
            counts = [table.filter((pl.col("system") == s) & (pl.col("split") == split))
                      .select("article_id", "n_matched", "n_gt", "n_tool") for s in (a, b)]
            joined = counts[0].join(counts[1], on="article_id", how="inner", suffix="_b").sort("article_id")
            if joined.height != counts[0].height or joined.height != counts[1].height:
                raise ValueError(f"{split}: {a} and {b} were scored on different articles; re-score before pairing")
            result = paired_bootstrap_f1(
                joined.select("n_matched", "n_gt", "n_tool").rows(),
                joined.select("n_matched_b", "n_gt_b", "n_tool_b").rows(), n=n, seed=seed)
            rows.append({"split": split, "comparison": comparison, "system_a": a, "system_b": b,
                         "f1_a": result["f1_a"], "f1_b": result["f1_b"], "diff": result["diff"],
                         "diff_ci_lo": result["diff_ci"][0], "diff_ci_hi": result["diff_ci"][1],
                         "share_not_above_zero": result["share_not_above_zero"],
                         "outcome": {"A better": f"{a} better", "B better": f"{b} better"}.get(
                             result["outcome"], result["outcome"]),
                         "n_articles": result["n_articles"]})
    return pl.DataFrame(rows, schema_overrides={"n_articles": pl.Int64}) if rows else pl.DataFrame()
