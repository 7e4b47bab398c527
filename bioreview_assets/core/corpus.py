"""SFT corpus building: GT filter + prompt builder -> chat rows, with the statistics the UI shows."""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Callable, Sequence

from bioreview_assets.core.gt_filter import GTPolicy, filter_article
from bioreview_assets.core.prompts import CountTokens, build_prompt, target_text
from bioreview_assets.core.schema import Article

RenderChat = Callable[[list[dict[str, str]]], str]


@dataclass
class CorpusStats:
    total_articles: int = 0
    kept_articles: int = 0
    dropped: Counter = field(default_factory=Counter)
    concerns_before: int = 0
    concerns_after: int = 0
    removed_by_rule: Counter = field(default_factory=Counter)
    prompt_tokens: list[int] = field(default_factory=list)
    truncated_by_source: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    categories: Counter = field(default_factory=Counter)
    severities: Counter = field(default_factory=Counter)
    sources: Counter = field(default_factory=Counter)
    figure_leaked: int = 0

    def truncation_rate(self) -> float:
        truncated = sum(t for t, _ in self.truncated_by_source.values())
        return truncated / self.kept_articles if self.kept_articles else 0.0

    def to_dict(self) -> dict:
        tokens = self.prompt_tokens or [0]
        return {
            "total_articles": self.total_articles,
            "kept_articles": self.kept_articles,
            "dropped": dict(self.dropped),
            "concerns_before": self.concerns_before,
            "concerns_after": self.concerns_after,
            "removed_by_rule": dict(self.removed_by_rule),
            "avg_concerns_per_article": round(self.concerns_after / self.kept_articles, 3) if self.kept_articles else 0,
            "prompt_tokens": {
                "mean": round(statistics.fmean(tokens), 1),
                "median": statistics.median(tokens),
                "max": max(tokens),
            },
            "truncation_rate": round(self.truncation_rate(), 4),
            "truncation_rate_by_source": {
                src: round(t / n, 4) for src, (t, n) in sorted(self.truncated_by_source.items()) if n
            },
            "categories": dict(self.categories.most_common()),
            "severities": dict(self.severities.most_common()),
            "sources": dict(self.sources.most_common()),
            "figure_concerns_leaked": self.figure_leaked,
        }


def build_corpus(
    articles: Sequence[Article],
    policy: GTPolicy,
    count_tokens: CountTokens,
    token_budget: int,
    prompt_version: str,
    render_chat: RenderChat,
    prompt_hash: str,
) -> tuple[list[dict], CorpusStats]:
    """One chat row per kept article (system, user, assistant target), and the corpus statistics."""
    rows: list[dict] = []
    stats = CorpusStats()
    for article in articles:
        stats.total_articles += 1
        stats.concerns_before += len(article.concerns)
        filtered = filter_article(article, policy)
        if filtered.article_drop_reason:
            stats.dropped[filtered.article_drop_reason] += 1
            continue
        stats.removed_by_rule.update(filtered.removed)
        prompt = build_prompt(article, count_tokens, token_budget, prompt_version)
        target = target_text(filtered.kept)
        messages = prompt.messages + [{"role": "assistant", "content": target}]
        rows.append(
            {
                "article_id": article.id,
                "source": article.source,
                "messages": messages,
                "text": render_chat(messages),
                "target": target,
                "n_concerns": len(filtered.kept),
                "prompt_tokens": prompt.user_tokens,
                "truncated": prompt.truncated,
                "cut_sections": prompt.cut_sections + [f"omitted:{name}" for name in prompt.omitted_sections],
                "prompt_hash": prompt_hash,
            }
        )
        stats.kept_articles += 1
        stats.concerns_after += len(filtered.kept)
        stats.prompt_tokens.append(prompt.user_tokens)
        stats.truncated_by_source[article.source][0] += int(prompt.truncated)
        stats.truncated_by_source[article.source][1] += 1
        stats.sources[article.source] += 1
        stats.categories.update(c.category for c in filtered.kept)
        stats.severities.update(c.severity for c in filtered.kept)
        stats.figure_leaked += sum(c.category == "figure_issue" for c in filtered.kept)
    if not any(row["n_concerns"] for row in rows):
        raise EmptyCorpus(
            f"no supervised tokens: none of {stats.total_articles} articles keeps a reference concern under the "
            f"corpus filter ({len(rows)} rows with an empty target; dropped: {dict(stats.dropped) or 'none'}; "
            f"concerns removed by rule: {dict(stats.removed_by_rule) or 'none'}): relax the corpus config "
            f"(min_concerns, min_resolution_confidence, exclude_figure) or check the split")
    return rows, stats


class EmptyCorpus(ValueError):
    """A corpus in which no row has a target to learn: training on it would teach nothing."""
