"""max_new_tokens: auto is the longest train target (in the model's tokens) x 1.25, rounded up to 16."""

import pytest

from bioreview_assets.core.generation_limits import target_token_limit
from bioreview_assets.core.gt_filter import GTPolicy
from bioreview_assets.core.prompts import target_text
from bioreview_assets.core.gt_filter import filter_article
from bioreview_assets.sample.generator import generate_sample_splits
from bioreview_assets.core.schema import Article


def _words(text: str) -> int:
    return len(text.split())


def test_limit_covers_the_longest_target_with_a_margin():
    articles = [Article.model_validate(row) for row in generate_sample_splits()["train"]]
    policy = GTPolicy(min_concerns=1)
    limit = target_token_limit(articles, policy, _words)
    longest = max(_words(target_text(filter_article(a, policy).kept)) for a in articles
                  if not filter_article(a, policy).article_drop_reason)
    assert limit.longest_target_tokens == longest and limit.targets == len(articles)
    assert limit.max_new_tokens % 16 == 0 and longest * 1.25 <= limit.max_new_tokens < longest * 1.25 + 16
    assert "longest of 120 train targets" in limit.explain()


def test_no_target_is_an_error_not_a_guess():
    articles = [Article.model_validate(row) for row in generate_sample_splits()["train"][:3]]
    with pytest.raises(ValueError, match="cannot derive max_new_tokens"):
        target_token_limit(articles, GTPolicy(min_concerns=999), _words)
