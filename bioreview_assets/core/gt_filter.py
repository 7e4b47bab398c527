"""The one ground-truth filter, shared by corpus building and scoring (fixes the reference's W8 mismatch)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from bioreview_assets.core.schema import FIGURE_CATEGORY, Article, ScorableConcern

GT_FILTER_VERSION = "1"  # bump when a rule below changes: score partitions built with another version are stale

# Order matters: a concern is charged to the first rule that removes it.
RULES = (
    "figure_flag",  # requires_figure_reading is true (the harness's rule)
    "figure_category",  # category figure_issue without the flag (only under category_or_flag)
    "missing_confidence",
    "low_confidence",
    "duplicate",
)


class GTPolicy(BaseModel):
    """Which reference concerns count (reference corpora A and B, docs/reference.md: reference pipeline §1.2).

    The defaults are a corpus's defaults; a corpus YAML (configs/corpora/) is a CorpusConfig, this plus its name.
    Scoring uses HARNESS_POLICY, the BM25 baseline BASELINE_GT_POLICY.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    exclude_figure: Literal["category_or_flag", "flag"] = "category_or_flag"
    min_resolution_confidence: float = 0.0
    # What a concern with no resolution_confidence means: the reference silently dropped it even at 0.0 (W8).
    missing_confidence: Literal["keep", "drop"] = "keep"
    dedup_exact: bool = True
    min_concerns: int = 1
    drop_title_only: bool = True


class CorpusConfig(GTPolicy):
    """A named corpus (configs/corpora/<name>.yaml): the GT filter its training rows are built under."""

    name: str
    description: str = ""


# The benchmark harness: drop flagged figure concerns only; every other concern and every article counts.
HARNESS_POLICY = GTPolicy(exclude_figure="flag", dedup_exact=False, min_concerns=0, drop_title_only=False)


@dataclass
class FilterResult:
    kept: list[ScorableConcern]
    removed: Counter = field(default_factory=Counter)
    # Under the flag-only rule, how many kept concerns still have category figure_issue ("both rules reported").
    figure_category_kept: int = 0
    article_drop_reason: str | None = None


def is_title_only(article: Article) -> bool:
    """True when the article has no abstract text and no non-empty section (nothing to review)."""
    has_sections = any(text.strip() for text in article.paper_text_sections.values())
    return not article.abstract.strip() and not has_sections


def filter_article(article: Article, policy: GTPolicy) -> FilterResult:
    """Apply the policy to one article: kept concerns in reviewer order, removal counts per rule."""
    result = FilterResult(kept=[])
    seen: set[tuple[str, str, str]] = set()
    for concern in article.concerns:
        rule = _removal_rule(concern, policy, seen)
        if rule:
            result.removed[rule] += 1
            continue
        if concern.category == FIGURE_CATEGORY:
            result.figure_category_kept += 1
        result.kept.append(
            ScorableConcern(
                concern_id=concern.concern_id,
                article_id=article.id,
                source=article.source,
                text=" ".join(concern.concern_text.split()),
                category=concern.category,
                severity=concern.severity,
            )
        )
    if policy.drop_title_only and is_title_only(article):
        result.article_drop_reason = "title_only"
    elif len(result.kept) < policy.min_concerns:
        result.article_drop_reason = "too_few_concerns"
    return result


def _removal_rule(concern, policy: GTPolicy, seen: set[tuple[str, str, str]]) -> str | None:
    if concern.requires_figure_reading:
        return "figure_flag"
    if policy.exclude_figure == "category_or_flag" and concern.category == FIGURE_CATEGORY:
        return "figure_category"
    if concern.resolution_confidence is None:
        if policy.missing_confidence == "drop":
            return "missing_confidence"
    elif concern.resolution_confidence < policy.min_resolution_confidence:
        return "low_confidence"
    if policy.dedup_exact:
        key = (" ".join(concern.concern_text.lower().split()), concern.category, concern.severity)
        if key in seen:
            return "duplicate"
        seen.add(key)
    return None
