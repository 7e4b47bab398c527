"""How many new tokens a model may generate, derived from the data it was taught (no hand-set guess)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

from bioreview_assets.core.gt_filter import GTPolicy, filter_article
from bioreview_assets.core.prompts import CountTokens, target_text
from bioreview_assets.core.schema import Article

MARGIN = 1.25  # room for a slightly longer answer than any seen in training
ROUND_TO = 16


@dataclass(frozen=True)
class TokenLimit:
    max_new_tokens: int
    longest_target_tokens: int
    targets: int

    def explain(self) -> str:
        return (f"longest of {self.targets} train targets is {self.longest_target_tokens} tokens; "
                f"x{MARGIN} margin, rounded up to {ROUND_TO}")


def target_token_limit(train_articles: Sequence[Article], policy: GTPolicy, count_tokens: CountTokens) -> TokenLimit:
    """max_new_tokens = the longest training target (model tokens) x MARGIN, rounded up to a multiple of ROUND_TO."""
    lengths = []
    for article in train_articles:
        filtered = filter_article(article, policy)
        if not filtered.article_drop_reason:
            lengths.append(count_tokens(target_text(filtered.kept)))
    if not lengths:
        raise ValueError("no train article keeps a target under the corpus policy: cannot derive max_new_tokens")
    longest = max(lengths)
    limit = int(math.ceil(longest * MARGIN / ROUND_TO) * ROUND_TO)
    return TokenLimit(max_new_tokens=limit, longest_target_tokens=longest, targets=len(lengths))
