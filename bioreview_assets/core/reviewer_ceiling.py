"""The human ceiling: each reviewer's concerns scored against the other reviewers' concerns of the same article.

Leave one reviewer out. For every article with at least two reviewers (counted on the concerns the harness scores:
flagged figure concerns removed), each reviewer becomes one *unit*: its concerns play the generated concerns, the
other reviewers' concerns of the article play the references. Units are scored with the same matcher, threshold and
algorithm as every system (`core.scoring.score_split`); two things differ and are passed along with the units:

* the shuffled-article null pairs a unit with a unit of *another article* (a unit of the same article would hold the
  unit's own concerns among its references), so `null_groups` names each unit's article;
* the bootstrap resamples articles, not units (a unit's F1 is not independent of its sibling units'), so
  `clusters` names each unit's article too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from bioreview_assets.core.gt_filter import HARNESS_POLICY, filter_article
from bioreview_assets.core.generated_concern import GeneratedConcern
from bioreview_assets.core.schema import Article

REVIEWERS_SYSTEM = "reviewers"
UNIT_SEPARATOR = "#reviewer"


def unit_id(article_id: str, reviewer: int) -> str:
    """The id of one leave-one-out unit: `<article_id>#reviewer<n>`."""
    return f"{article_id}{UNIT_SEPARATOR}{reviewer}"


def unit_article(unit: str) -> str:
    """The article a unit id belongs to."""
    return unit.rsplit(UNIT_SEPARATOR, 1)[0]


@dataclass(frozen=True)
class ReviewerUnit:
    """One reviewer of one article: its concerns (the 'generated' side) and the others' (the references)."""

    unit_id: str
    article_id: str
    source: str
    reviewer: int
    own: tuple[GeneratedConcern, ...]
    others: tuple  # ScorableConcern of the other reviewers, relabelled with the unit id


def reviewer_units(articles: Sequence[Article]) -> list[ReviewerUnit]:
    """Leave-one-reviewer-out units of every article with >= 2 reviewers holding scorable concerns (split order)."""
    units = []
    for article in articles:
        reviewer_of = {c.concern_id: c.reviewer_num for c in article.concerns}
        kept = filter_article(article, HARNESS_POLICY).kept
        by_reviewer: dict[int, list] = {}
        for concern in kept:
            by_reviewer.setdefault(reviewer_of[concern.concern_id], []).append(concern)
        if len(by_reviewer) < 2:
            continue
        for reviewer in sorted(by_reviewer):
            uid = unit_id(article.id, reviewer)
            others = tuple(c.model_copy(update={"article_id": uid})
                           for r in sorted(by_reviewer) if r != reviewer for c in by_reviewer[r])
            own = tuple(GeneratedConcern.of(c.text, c.category, c.severity) for c in by_reviewer[reviewer])
            units.append(ReviewerUnit(uid, article.id, article.source, reviewer, own, others))
    return units


def reviewer_predictions(articles: Sequence[Article]) -> dict[str, list[GeneratedConcern]]:
    """Unit id -> that reviewer's concerns: what the `reviewers` system 'generates' (its concerns partition)."""
    return {u.unit_id: list(u.own) for u in reviewer_units(articles)}


def reviewer_refs(articles: Sequence[Article]) -> tuple[list, list[str]]:
    """(ArticleRef per unit: the other reviewers' concerns as references, the article of each unit) for score_split."""
    from bioreview_assets.core.scoring import ArticleRef

    units = reviewer_units(articles)
    refs = [ArticleRef(article_id=u.unit_id, source=u.source, gt=list(u.others)) for u in units]
    return refs, [u.article_id for u in units]
