"""Baseline systems that need no model: BM25 retrieval of training articles' reference concerns, the
paper-agnostic checklist, and the reviewers themselves (the human ceiling, leave one reviewer out)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from bioreview_assets.core.checklist import build_checklist
from bioreview_assets.core.bm25 import Bm25Baseline, Bm25Doc, article_text_for_bm25
from bioreview_assets.core.gt_filter import GTPolicy, filter_article
from bioreview_assets.core.generated_concern import GeneratedConcern
from bioreview_assets.core.reviewer_ceiling import REVIEWERS_SYSTEM, reviewer_units
from bioreview_assets.core.schema import Article

# The baselines a project may list (configs/project.yaml baselines); each is scored as its own system.
BASELINES: tuple[str, ...] = ("bm25",)

# Training concerns a baseline may copy: no figure concerns (by category or flag), exact duplicates removed.
BASELINE_GT_POLICY = GTPolicy(exclude_figure="category_or_flag", dedup_exact=True, min_concerns=0, drop_title_only=False)


def bm25_predictions(
    train: Sequence[Article], targets: Sequence[Article], top_docs: int = 8, n_concerns: int = 12
) -> dict[str, list[GeneratedConcern]]:
    """For each target article, the concerns of its most similar training articles (labels copied along)."""
    labels: dict[str, tuple[str, str]] = {}
    docs = []
    for article in train:
        kept = filter_article(article, BASELINE_GT_POLICY).kept
        for concern in kept:
            labels.setdefault(concern.text, (concern.category, concern.severity))
        text = article_text_for_bm25(article.title, article.abstract, article.paper_text_sections)
        docs.append(Bm25Doc(article_id=article.id, text=text, concerns=[c.text for c in kept]))
    baseline = Bm25Baseline(docs, top_docs=top_docs, n_concerns=n_concerns)
    out = {}
    for article in targets:
        query = article_text_for_bm25(article.title, article.abstract, article.paper_text_sections)
        texts = baseline.predict(query, exclude_ids={article.id})
        out[article.id] = [GeneratedConcern.of(t, *labels[t]) for t in texts]
    return out


BM25 = "bm25"
CHECKLIST = "checklist"
BASELINES = (BM25, CHECKLIST, REVIEWERS_SYSTEM)


@dataclass(frozen=True)
class BaselineConcerns:
    """What a baseline emits on one split: concerns per scored unit (an article, or a reviewer of one), its sources."""

    by_unit: dict[str, list[GeneratedConcern]]
    sources: dict[str, str]
    meta: dict = field(default_factory=dict)


def baseline_concerns(
    name: str,
    targets: Sequence[Article],
    train: Callable[[], Sequence[Article]],
    *,
    encode: Callable | None = None,
    threshold: float | None = None,
    cap: int | None = None,
    matcher: dict | None = None,
) -> BaselineConcerns:
    """The concerns of baseline `name` on the target articles (`train` is called only by baselines that read it)."""
    sources = {a.id: a.source for a in targets}
    if name == BM25:
        return BaselineConcerns(bm25_predictions(train(), targets), sources)
    if name == CHECKLIST:
        if encode is None or threshold is None:
            raise ValueError("the checklist baseline clusters with the matcher's embedder: pass encode and threshold")
        checklist = build_checklist(train(), encode, threshold, BASELINE_GT_POLICY, cap)
        meta = {"k": checklist.k, "median_concerns_per_training_article": checklist.median_per_article,
                "n_training_concerns": checklist.n_training_concerns, "n_clusters": checklist.n_clusters,
                "cluster_sizes": list(checklist.cluster_sizes), "threshold": checklist.threshold, "cap": cap,
                "matcher": matcher}
        return BaselineConcerns({a.id: list(checklist.concerns) for a in targets}, sources, meta)
    if name == REVIEWERS_SYSTEM:
        units = reviewer_units(targets)
        meta = {"n_units": len(units), "n_articles_with_2_reviewers": len({u.article_id for u in units}),
                "n_articles": len(targets)}
        return BaselineConcerns({u.unit_id: list(u.own) for u in units}, {u.unit_id: u.source for u in units}, meta)
    raise KeyError(f"unknown baseline {name!r} (known: {', '.join(BASELINES)})")
