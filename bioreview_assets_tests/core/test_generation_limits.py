"""max_new_tokens: auto is the 95th percentile of the train targets (in the model's tokens), rounded up to 16."""

import pytest

from bioreview_assets.core.generation_limits import target_token_limit
from bioreview_assets.core.gt_filter import GTPolicy
from bioreview_assets.core.prompts import target_text
from bioreview_assets.core.gt_filter import filter_article
from bioreview_assets.sample.generator import generate_sample_splits
from bioreview_assets.core.schema import Article


def _words(text: str) -> int:
    return len(text.split())


def test_limit_covers_95_percent_of_the_targets():
    articles = [Article.model_validate(row) for row in generate_sample_splits()["train"]]
    policy = GTPolicy(min_concerns=1)
    limit = target_token_limit(articles, policy, _words)
    lengths = sorted(_words(target_text(filter_article(a, policy).kept)) for a in articles
                     if not filter_article(a, policy).article_drop_reason)
    assert limit.longest_target_tokens == lengths[-1] and limit.targets == len(articles) == 120
    assert limit.percentile_tokens == lengths[113]  # nearest rank: ceil(0.95 * 120) = 114th
    assert limit.max_new_tokens % 16 == 0 and lengths[113] <= limit.max_new_tokens < lengths[113] + 16
    covered = sum(n <= limit.max_new_tokens for n in lengths)
    assert covered >= 114  # at least 95% of the targets fit
    assert "p95 of 120 train targets" in limit.explain()


def test_no_target_is_an_error_not_a_guess():
    articles = [Article.model_validate(row) for row in generate_sample_splits()["train"][:3]]
    with pytest.raises(ValueError, match="cannot derive max_new_tokens"):
        target_token_limit(articles, GTPolicy(min_concerns=999), _words)
