"""SFT corpus building refuses a corpus with nothing to learn (issue 34)."""

import pytest

from bioreview_assets.core.corpus import EmptyCorpus, build_corpus
from bioreview_assets.core.gt_filter import CorpusConfig
from bioreview_assets.core.schema import Article
from bioreview_assets.sample.generator import generate_sample_splits


def _build(articles, policy):
    return build_corpus(articles, policy, lambda text: len(text.split()), 1536, "v2",
                        lambda messages: "\n".join(m["content"] for m in messages), "prompt-hash")


def test_a_corpus_without_supervised_tokens_is_refused_with_the_reason():
    articles = [Article.model_validate({**a, "concerns": []}) for a in generate_sample_splits()["train"][:5]]
    with pytest.raises(EmptyCorpus, match=r"no supervised tokens: none of 5 articles .*dropped: \{'too_few_concerns"):
        _build(articles, CorpusConfig(name="all_nonfig"))
    # min_concerns 0 keeps the articles, with empty targets: still nothing to learn
    with pytest.raises(EmptyCorpus, match=r"5 rows with an empty target"):
        _build(articles, CorpusConfig(name="keep_all", min_concerns=0))


def test_a_corpus_with_targets_is_built():
    articles = [Article.model_validate(a) for a in generate_sample_splits()["train"][:5]]
    rows, stats = _build(articles, CorpusConfig(name="all_nonfig"))
    assert rows and stats.kept_articles == len(rows) and any(row["n_concerns"] for row in rows)
