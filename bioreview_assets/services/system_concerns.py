"""One concerns partition: a model's parsed generations under a post-processing policy, or a baseline's concerns."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from bioreview_assets.config.systems import System
from bioreview_assets.core.baselines import CHECKLIST, baseline_concerns
from bioreview_assets.core.matcher_spec import MatcherSpec
from bioreview_assets.core.postprocess import STEPS, PostprocessPolicy, apply_policy
from bioreview_assets.store.artifacts import ArtifactStore
from bioreview_assets.store.concern_table import write_concerns
from bioreview_assets.store.generation_table import generated_concerns
from bioreview_assets.store.layout import read_articles, read_eval_articles


@dataclass(frozen=True)
class SystemConcerns:
    """What a concerns partition wrote, and what its materialisation shows and checks."""

    articles: list  # the split's evaluated articles
    by_article: dict[str, list]  # unit id -> kept concerns
    sources: dict[str, str]  # unit id -> source
    removed: dict[str, int]  # concerns removed per post-processing step
    n_concerns: int
    meta: dict[str, Any]  # as written beside the concerns
    cap: int | None  # the per-article cap the concerns are checked against
    path: str
    content_hash: str


def baseline_kwargs(name: str, embedders, default_matcher: MatcherSpec, default_policy: PostprocessPolicy) -> dict:
    """The checklist clusters with the default matcher's embedder at its threshold, capped like every system."""
    if name != CHECKLIST:
        return {}
    encode, identity = embedders.encoder(default_matcher)
    return {"encode": encode, "threshold": default_matcher.effective_threshold,
            "matcher": default_matcher.identity(identity), "cap": default_policy.cap}


def similarity_for_policy(policy: PostprocessPolicy, embedders, matcher: MatcherSpec):
    """Embedding similarity of `matcher` (the default one) for semantic dedup (only built when the policy asks)."""
    if policy.semantic_dedup_threshold is None:
        return None
    return embedders.similarity(matcher)


def system_concerns(store: ArtifactStore, system: System, split: str, eval_article_limit: int | None,
                    policy: PostprocessPolicy | None, default_matcher: MatcherSpec,
                    default_policy: PostprocessPolicy, embedders) -> SystemConcerns:
    """Build and write the concerns of `system` on the split: a baseline's, or its model's parsed generations under
    `policy` (None for a baseline). `embedders` gives the default matcher's encoder and similarity when needed."""
    articles = read_eval_articles(store, split, eval_article_limit)
    sources = {a.id: a.source for a in articles}
    removed = dict.fromkeys(STEPS, 0)
    if system.kind == "baseline":
        out = baseline_concerns(system.name, articles, lambda: read_articles(store, "train"),
                                **baseline_kwargs(system.name, embedders, default_matcher, default_policy))
        by_article, sources = out.by_unit, out.sources
        meta = {"kind": "baseline", "baseline": system.name, **out.meta}
        cap = out.meta.get("cap")  # BM25 and the reviewers emit what they emit; the checklist is capped
    else:
        cap = policy.cap
        similarity = similarity_for_policy(policy, embedders, default_matcher)
        parsed_by_article, lineage = generated_concerns(store, system.model, split)
        by_article = {}
        for article_id, parsed in parsed_by_article.items():
            kept, counts = apply_policy(parsed, policy, similarity)
            by_article[article_id] = kept
            for step, n in counts.items():
                removed[step] += n
        meta = {"kind": "model", "model": system.model, "policy": policy.__dict__, "lineage": lineage}
    n_concerns = sum(len(v) for v in by_article.values())
    meta.update({"system": system.name, "split": split, "n_concerns": n_concerns, "removed": removed})
    path, content_hash = write_concerns(store, system.name, split, by_article, sources, meta)
    return SystemConcerns(articles=articles, by_article=by_article, sources=sources, removed=removed,
                          n_concerns=n_concerns, meta=meta, cap=cap, path=path, content_hash=content_hash)
