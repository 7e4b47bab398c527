import copy

from bioreview_assets.core.gt_filter import HARNESS_POLICY, GTPolicy, filter_article
from bioreview_assets.core.schema import Article
from bioreview_assets.sample.generator import generate_sample_splits


def _article(concerns):
    row = copy.deepcopy(generate_sample_splits(sizes={"val": 1})["val"][0])
    base = row["concerns"][0]
    row["concerns"] = [{**base, "concern_id": f"{row['id']}:R1C{i}", **patch} for i, patch in enumerate(concerns, 1)]
    return Article.model_validate(row)


CONCERNS = [
    {"concern_text": "Figure 2 has no error bars at all.", "category": "figure_issue", "requires_figure_reading": True},
    {"concern_text": "Figure 3 axis is unlabelled here.", "category": "figure_issue", "requires_figure_reading": False},
    {"concern_text": "The sample size is far too small.", "category": "design_flaw", "resolution_confidence": None},
    {"concern_text": "The t-test assumes normality here.", "category": "statistical_methodology",
     "resolution_confidence": 0.5},
    {"concern_text": "The t-test assumes normality here.", "category": "statistical_methodology",
     "resolution_confidence": 0.9},
    {"concern_text": "The causal claim is overstated.", "category": "interpretation", "resolution_confidence": 0.95},
]


def test_each_rule_is_counted_once_in_order():
    policy = GTPolicy(min_resolution_confidence=0.8, missing_confidence="drop", min_concerns=0, drop_title_only=False)
    result = filter_article(_article(CONCERNS), policy)
    assert dict(result.removed) == {"figure_flag": 1, "figure_category": 1, "missing_confidence": 1,
                                    "low_confidence": 1}
    assert [c.text for c in result.kept] == ["The t-test assumes normality here.", "The causal claim is overstated."]


def test_exact_duplicates_are_removed_when_confidence_allows_both():
    result = filter_article(_article(CONCERNS), GTPolicy(min_concerns=0, drop_title_only=False))
    assert result.removed["duplicate"] == 1
    assert result.removed["missing_confidence"] == 0  # default rule: a missing confidence is kept


def test_harness_policy_excludes_by_flag_only_and_reports_the_other_rule():
    result = filter_article(_article(CONCERNS), HARNESS_POLICY)
    assert dict(result.removed) == {"figure_flag": 1}
    assert result.figure_category_kept == 1
    assert len(result.kept) == 5


def test_article_level_rules():
    assert filter_article(_article(CONCERNS), GTPolicy(min_concerns=5)).article_drop_reason == "too_few_concerns"
    assert filter_article(_article(CONCERNS), GTPolicy(min_concerns=3)).article_drop_reason is None
    title_only = _article(CONCERNS).model_copy(update={"abstract": " ", "paper_text_sections": {"methods": " "}})
    assert filter_article(title_only, GTPolicy(drop_title_only=True)).article_drop_reason == "title_only"
