"""Checks on sft_corpus: no figure concern leaks into targets, every row supervises something, truncation rate."""

from __future__ import annotations

import json

import dagster as dg

from bioreview_assets.core.schema import FIGURE_CATEGORY, Article

CORPUS = dg.AssetKey("sft_corpus")
CORPUS_CHECKS = [
    dg.AssetCheckSpec("no_figure_concerns_leaked", asset=CORPUS, description="No target concern is a figure concern"),
    dg.AssetCheckSpec("every_row_has_target", asset=CORPUS, description="Every row has >= 1 target concern"),
    dg.AssetCheckSpec("truncation_rate", asset=CORPUS, description="Share of prompts cut to fit the token budget"),
]


def evaluate_corpus_checks(
    rows: list[dict], articles: list[Article], stats: dict, warn_rate: float, label: str = ""
) -> list[dg.AssetCheckResult]:
    """Re-derive each check from the written rows and the source articles (not from the builder's counters)."""
    figure_texts = {
        (a.id, " ".join(c.concern_text.split()))
        for a in articles
        for c in a.concerns
        if c.requires_figure_reading or c.category == FIGURE_CATEGORY
    }
    leaked = sum(
        (row["article_id"], item["text"]) in figure_texts for row in rows for item in json.loads(row["target"])
    )
    empty = sum(not json.loads(row["target"]) for row in rows)
    rate = stats["truncation_rate"]
    where = f"{label}: " if label else ""
    n_targets = sum(len(json.loads(row["target"])) for row in rows)
    leak_text = (f"{where}{leaked} of {n_targets} target concerns are figure concerns: the model would learn to "
                 f"comment on figures it cannot see" if leaked
                 else f"{where}none of {n_targets} target concerns is a figure concern")
    empty_text = (f"{where}{empty} of {len(rows)} rows have no target concern: they teach the model to say nothing"
                  if empty else f"{where}all {len(rows)} rows have at least one target concern")
    trunc_text = (f"{where}{rate:.1%} of prompts were cut to the token budget (warn above {warn_rate:.0%}): "
                  + ("many articles are trained on partial text" if rate > warn_rate else "within the limit"))
    return [
        dg.AssetCheckResult(check_name="no_figure_concerns_leaked", passed=leaked == 0, description=leak_text,
                            metadata={"leaked": leaked, "target_concerns": n_targets}),
        dg.AssetCheckResult(check_name="every_row_has_target", passed=empty == 0, description=empty_text,
                            metadata={"empty_rows": empty, "rows": len(rows)}),
        dg.AssetCheckResult(
            check_name="truncation_rate",
            passed=rate <= warn_rate,
            severity=dg.AssetCheckSeverity.WARN,
            description=trunc_text,
            metadata={"truncation_rate": round(rate, 4), "warn_above": warn_rate},
        ),
    ]
