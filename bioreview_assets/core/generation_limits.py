"""How many new tokens a model may generate, derived from the data it was taught (no hand-set guess)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from bioreview_assets.core.gt_filter import GTPolicy, filter_article
from bioreview_assets.core.prompts import CountTokens, target_text
from bioreview_assets.core.schema import Article

# The limit covers this share of the training targets (nearest rank). It was the longest target x 1.25 (704 tokens
# on the bundled sample, whose targets run median 327, p95 528, longest 558 SmolLM2 tokens): every decode step of a
# batch runs until its last row stops, so a base model that rambles, or one output that loops, paid 704 steps for a
# whole batch (benchmarks/results/demo_cpu_profile.txt). An answer as long as 95% of what the model was taught is
# the answer it was taught; the outputs stopped at the limit are counted (generations metadata
# outputs_at_token_limit), for every system alike, the base model included.
PERCENTILE = 95
ROUND_TO = 16


@dataclass(frozen=True)
class TokenLimit:
    max_new_tokens: int
    longest_target_tokens: int
    targets: int
    percentile_tokens: int

    def explain(self) -> str:
        return (f"p{PERCENTILE} of {self.targets} train targets is {self.percentile_tokens} tokens "
                f"(longest {self.longest_target_tokens}); rounded up to {ROUND_TO}")


def target_token_lengths(train_articles: Sequence[Article], policy: GTPolicy, count_tokens: CountTokens) -> list[int]:
    """Model tokens of each training target the corpus policy keeps (what the model is taught to write)."""
    lengths = []
    for article in train_articles:
        filtered = filter_article(article, policy)
        if not filtered.article_drop_reason:
            lengths.append(count_tokens(target_text(filtered.kept)))
    return lengths


def target_token_limit(train_articles: Sequence[Article], policy: GTPolicy, count_tokens: CountTokens) -> TokenLimit:
    """max_new_tokens = the PERCENTILE-th training target length (model tokens, nearest rank), rounded up to ROUND_TO."""
    lengths = sorted(target_token_lengths(train_articles, policy, count_tokens))
    if not lengths:
        raise ValueError("no train article keeps a target under the corpus policy: cannot derive max_new_tokens")
    at = lengths[math.ceil(PERCENTILE / 100 * len(lengths)) - 1]
    limit = int(math.ceil(at / ROUND_TO) * ROUND_TO)
    return TokenLimit(max_new_tokens=limit, longest_target_tokens=lengths[-1], targets=len(lengths),
                      percentile_tokens=at)
