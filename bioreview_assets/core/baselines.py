"""Baseline systems that need no model: BM25 retrieval of training articles' reference concerns."""

from __future__ import annotations

from collections.abc import Sequence

from bioreview_assets.core.bm25 import Bm25Baseline, Bm25Doc, article_text_for_bm25
from bioreview_assets.core.gt_filter import GTPolicy, filter_article
from bioreview_assets.core.parsing import GeneratedConcern
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
