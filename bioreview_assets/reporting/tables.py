"""Leaderboard and breakdown tables from the stored score rows (polars in, markdown out)."""

from __future__ import annotations

import polars as pl

from bioreview_assets.config.systems import POLICY_SEPARATOR  # `<model>~<policy>` systems are policy variants

LEADERBOARD_COLUMNS = [
    "system", "split", "f1", "f1_ci_lo", "f1_ci_hi", "recall", "precision", "recall_major",
    "null_f1", "count_oracle_f1", "concerns_per_article", "articles_in_output", "n_articles",
]


def leaderboard(scores: pl.DataFrame, matcher: str) -> pl.DataFrame:
    """One row per system x split under one matcher, ranked by F1 within split, with the val->test delta."""
    table = scores.filter(pl.col("matcher") == matcher)
    if table["matcher_id"].n_unique() > 1:
        # Two configurations under one name (a config edited without re-scoring everything): never mix them.
        raise ValueError(f"matcher {matcher!r} has several identities in the stored scores; re-score stale partitions")
    for split, rows in table.group_by("split"):
        # A split file or GT filter changed after some partitions were scored: their F1 is over other articles.
        versions = rows.group_by("split_hash", "gt_filter").agg(pl.col("system").sort())
        if versions.height > 1:
            detail = "; ".join(f"split {r['split_hash'][:12]} / gt filter {r['gt_filter']}: {', '.join(r['system'])}"
                               for r in versions.sort("split_hash").to_dicts())
            raise ValueError(f"split {split[0]!r} was scored on {versions.height} versions of its data ({detail}); "
                             "re-score the stale partitions (rescore_stale_schedule) before ranking them")
    delta = (
        table.filter(pl.col("split").is_in(["val", "test"]))
        .pivot(on="split", index="system", values="f1")
        .select("system", (pl.col("test") - pl.col("val")).alias("test_minus_val_f1"))
        if {"val", "test"} <= set(table["split"].to_list())
        else pl.DataFrame({"system": [], "test_minus_val_f1": []}, schema={"system": pl.String,
                                                                         "test_minus_val_f1": pl.Float64})
    )
    return (
        table.select(LEADERBOARD_COLUMNS)
        .join(delta, on="system", how="left")
        # System name breaks ties so equal-F1 rows keep one order from run to run.
        .sort(["split", "f1", "system"], descending=[False, True, False])
    )


HEADLINE_COLUMNS = ["system", "F1 [95% CI]", "recall", "precision", "null F1", "F1 above null", "oracle F1",
                    "concerns/article", "articles"]


def default_rows() -> pl.Expr:
    """A model at its default policy, a baseline or an ensemble; not a policy variant or a count baseline."""
    return ~pl.col("system").str.contains(POLICY_SEPARATOR, literal=True)


def headline(board: pl.DataFrame, split: str) -> pl.DataFrame:
    """The table a newcomer reads: one row per system at its default policy, F1 with its CI, null and oracle."""
    rows = board.filter((pl.col("split") == split) & default_rows())
    return rows.select(
        pl.when(pl.col("concerns_per_article") == 0).then(pl.col("system") + " (produced nothing)")
        .otherwise(pl.col("system")).alias("system"),
        pl.format("{} [{}, {}]", *(pl.col(c).round(3).cast(pl.String).str.pad_end(5, "0")
                                   for c in ("f1", "f1_ci_lo", "f1_ci_hi"))).alias("F1 [95% CI]"),
        pl.col("recall"), pl.col("precision"), pl.col("null_f1").alias("null F1"),
        (pl.col("f1") - pl.col("null_f1")).alias("F1 above null"),
        pl.col("count_oracle_f1").alias("oracle F1"),
        pl.col("concerns_per_article").alias("concerns/article"),
        pl.format("{}/{}", pl.col("articles_in_output"), pl.col("n_articles")).alias("articles"),
    )


def variants(board: pl.DataFrame, split: str) -> pl.DataFrame:
    """Post-processing policy variants and ensemble count baselines, beside their default system."""
    rows = board.filter((pl.col("split") == split) & ~default_rows())
    return rows.select("system", "f1", "recall", "precision", "null_f1", "concerns_per_article")


def matcher_comparison(scores: pl.DataFrame) -> pl.DataFrame:
    """F1 of every system x split under every matcher, side by side (the matcher identity is in the column name)."""
    return scores.pivot(on="matcher", index=["system", "split"], values="f1").sort(["split", "system"])


def breakdown(metrics_by_partition: dict[tuple[str, str], dict], key: str, label: str) -> pl.DataFrame:
    """Per-source or per-category micro metrics of every system x split (key: per_source_micro | per_category_micro)."""
    rows = []
    for (system, split), metrics in metrics_by_partition.items():
        for group, values in (metrics.get(key) or {}).items():
            rows.append({"system": system, "split": split, label: group,
                         **{k: values.get(k) for k in ("n_gt", "n_tool", "n_matched")},
                         "recall": values.get("recall", values.get("recall_micro")),
                         "precision": values.get("precision", values.get("precision_micro")),
                         "f1": values.get("f1", values.get("f1_micro"))})
    return pl.DataFrame(rows, infer_schema_length=None).sort(["split", "system", label]) if rows else pl.DataFrame()


def probe_table(board: pl.DataFrame) -> pl.DataFrame:
    """Score by training step: checkpoint probes (`model@stepN`) next to their model's final adapter."""
    probes = board.filter(pl.col("system").str.contains(r"@step\d+$"))
    if probes.is_empty():
        return pl.DataFrame()
    probes = probes.with_columns(
        pl.col("system").str.extract(r"^(.*)@step\d+$").alias("model"),
        pl.col("system").str.extract(r"@step(\d+)$").cast(pl.Int64).alias("step"),
    )
    finals = board.filter(pl.col("system").is_in(probes["model"].unique().to_list())).with_columns(
        pl.col("system").alias("model"), pl.lit(None, dtype=pl.Int64).alias("step"))
    return (
        pl.concat([probes, finals], how="diagonal_relaxed")
        .select("model", "step", "split", "f1", "recall", "precision", "null_f1", "n_articles")
        .sort(["model", "split", "step"], nulls_last=True)
    )
