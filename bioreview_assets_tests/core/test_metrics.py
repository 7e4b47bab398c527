"""Per-article scoring, aggregation and bootstrap: hand-computed fixtures of the harness rules.

The rules: docs/reference.md, harness §3.6-§3.8."""

from __future__ import annotations

import random

import numpy as np
import pytest

from bioreview_assets.core.metrics import ArticleScore, aggregate, bootstrap_ci, harness_choice_indices, py312_sum, score_article
from bioreview_assets.core.schema import ScorableConcern


def concern(article_id: str, idx: int, category: str, severity: str, source: str = "elife") -> ScorableConcern:
    """A reference concern with a readable id."""
    return ScorableConcern(concern_id=f"{article_id}#{idx}", article_id=article_id, source=source,
                           text=f"concern {idx}", category=category, severity=severity)


# Article A: 4 generated x 3 reference concerns, threshold 0.5.
A_GT = [concern("a", 0, "design_flaw", "major"), concern("a", 1, "statistical_methodology", "minor"),
        concern("a", 2, "design_flaw", "optional")]
A_SIM = np.array([
    [0.9, 0.1, 0.2],  # matched to ref 0
    [0.2, 0.6, 0.3],  # matched to ref 1
    [0.3, 0.3, 0.2],  # unmatched, argmax tie 0/1 -> first index 0 (design_flaw)
    [0.1, 0.2, 0.4],  # unmatched, below threshold everywhere, argmax -> ref 2 (design_flaw)
])


def score_a() -> ArticleScore:
    """Article A scored with the harness rules."""
    return score_article("a", "elife", A_SIM, A_GT, 0.5, "hungarian")


def test_py312_sum_reproduces_compensated_summation():
    # Python 3.12+ sum(): 1.0 and 1.0; naive left-to-right addition (Python <= 3.11) gives other values.
    assert py312_sum([0.1] * 10) == 1.0
    assert py312_sum([1e16, 1.0, -1e16]) == 1.0
    naive = 0.0
    for x in [0.1] * 10:
        naive += x
    assert naive != 1.0
    assert py312_sum([]) == 0.0
    assert py312_sum([float("inf"), 1.0]) == float("inf")


def test_score_article_counts_pairs_categories_and_severities():
    s = score_a()
    assert (s.n_gt, s.n_tool, s.n_matched) == (3, 4, 2)
    assert s.pairs == ((0, 0, 0.9), (1, 1, 0.6))
    assert s.soft_credit == pytest.approx(1.5)
    assert s.recall == pytest.approx(2 / 3)
    assert s.precision == 0.5
    assert s.f1 == pytest.approx(2 * 0.5 * (2 / 3) / (0.5 + 2 / 3))
    assert s.soft_recall == pytest.approx(0.5)
    assert s.soft_precision == pytest.approx(0.375)
    # design_flaw: refs 0 and 2; tool 0 (partner), tool 2 (tie -> ref 0), tool 3 (argmax ref 2); 1 matched.
    assert s.per_category == {"design_flaw": (2, 3, 1), "statistical_methodology": (1, 1, 1)}
    assert s.per_severity == {"major": (1, 1), "minor": (1, 1), "optional": (1, 0)}


def test_no_category_counts_without_tool_or_reference_concerns():
    no_tool = score_article("b", "elife", np.zeros((0, 1)), [concern("b", 0, "other", "major")], 0.5, "hungarian")
    assert no_tool.per_category == {}
    assert (no_tool.n_gt, no_tool.n_tool, no_tool.recall, no_tool.precision, no_tool.f1) == (1, 0, 0.0, 0.0, 0.0)
    no_ref = score_article("d", "plos", np.zeros((2, 0)), [], 0.5, "hungarian")
    assert no_ref.per_category == {}
    # Its generated concerns still count in the precision denominator.
    assert (no_ref.n_tool, no_ref.n_matched, no_ref.precision) == (2, 0, 0.0)


def test_missing_category_counts_as_other():
    gt = [concern("x", 0, "", "major")]
    assert score_article("x", "elife", np.array([[0.9]]), gt, 0.5, "hungarian").per_category == {"other": (1, 1, 1)}


def test_score_article_rejects_a_matrix_that_does_not_fit_the_references():
    with pytest.raises(ValueError, match="does not fit"):
        score_article("a", "elife", np.zeros((2, 2)), A_GT, 0.5, "hungarian")


def test_unknown_severity_is_an_error():
    with pytest.raises(ValueError, match="unknown severity"):
        score_article("x", "elife", np.array([[0.9]]), [concern("x", 0, "other", "critical")], 0.5, "hungarian")


def four_articles() -> list[ArticleScore]:
    """A (elife, above), B (elife, no predictions), C (plos, 2 tool x 1 ref), D (plos, no references)."""
    b = score_article("b", "elife", np.zeros((0, 2)),
                      [concern("b", 0, "design_flaw", "major"), concern("b", 1, "other", "major")], 0.5, "hungarian")
    c = score_article("c", "plos", np.array([[0.8], [0.7]]), [concern("c", 0, "interpretation", "major", "plos")],
                      0.5, "hungarian")
    d = score_article("d", "plos", np.zeros((1, 0)), [], 0.5, "hungarian")
    return [score_a(), b, c, d]


def test_aggregate_micro_and_labelled_macros_by_hand():
    m = aggregate(four_articles())
    assert (m["n_articles"], m["n_gt"], m["n_tool"], m["n_matched"]) == (4, 6, 7, 3)
    assert m["recall_micro"] == 0.5
    assert m["precision_micro"] == pytest.approx(3 / 7)
    assert m["f1_micro"] == pytest.approx(6 / 13)
    assert m["recall_major"] == 0.5  # A ref 0 and C ref 0 matched of 4 major
    assert m["recall_minor"] == 1.0
    assert m["per_severity_micro"]["optional"] == {"n_gt": 1, "n_matched": 0, "recall": 0.0}
    cats = m["per_category_micro"]
    # B (no predictions) adds no category counts: its design_flaw/other refs do not appear.
    assert set(cats) == {"design_flaw", "statistical_methodology", "interpretation"}
    assert cats["design_flaw"] == {"n_gt": 2, "n_tool": 3, "n_matched": 1, "recall": 0.5,
                                   "precision": pytest.approx(1 / 3), "f1": pytest.approx(0.4)}
    assert cats["interpretation"]["f1"] == pytest.approx(2 / 3)
    assert m["f1_category_macro"] == pytest.approx((0.4 + 1.0 + 2 / 3) / 3)
    assert m["recall_category_macro"] == pytest.approx(5 / 6)
    assert m["precision_category_macro"] == pytest.approx(11 / 18)
    src = m["per_source_micro"]
    assert src["elife"] == {"n_articles": 2, "n_gt": 5, "n_tool": 4, "n_matched": 2, "recall_micro": 0.4,
                            "precision_micro": 0.5, "f1_micro": pytest.approx(4 / 9)}
    assert src["plos"]["f1_micro"] == pytest.approx(0.5)
    assert m["f1_source_macro"] == pytest.approx((4 / 9 + 0.5) / 2)
    assert m["recall_source_macro"] == pytest.approx(0.7)
    # Soft metrics: mean over all 4 articles (B and D contribute 0), then harmonic mean.
    assert m["soft_recall_article_mean"] == pytest.approx((0.5 + 0.8) / 4)
    assert m["soft_precision_article_mean"] == pytest.approx((0.375 + 0.4) / 4)
    sr, sp = 0.325, 0.19375
    assert m["soft_f1"] == pytest.approx(2 * sr * sp / (sr + sp))
    assert (m["n_articles_zero_recall"], m["n_articles_perfect_recall"]) == (1, 1)
    # Article macro: recalls 2/3, 0, 1, 0 (D has no references) over 4 articles.
    assert m["recall_article_macro"] == pytest.approx((2 / 3 + 1) / 4)
    assert m["precision_article_macro"] == pytest.approx((0.5 + 0.5) / 4)


def test_f1_is_zero_when_precision_and_recall_are_zero():
    lone = score_article("b", "elife", np.zeros((0, 1)), [concern("b", 0, "other", "major")], 0.5, "hungarian")
    m = aggregate([lone])
    assert (m["recall_micro"], m["precision_micro"], m["f1_micro"], m["soft_f1"]) == (0.0, 0.0, 0.0, 0.0)
    assert m["f1_category_macro"] == 0.0


def harness_bootstrap(results: list[ArticleScore], n: int, seed: int = 42):
    """Literal transcription of upstream runner.bootstrap_ci (alpha 0.05), written independently of ours."""
    rng = random.Random(seed)
    recalls, precisions = [], []
    for _ in range(n):
        sample = [rng.choice(results) for _ in range(len(results))]
        matched = sum(r.n_matched for r in sample)
        gt = sum(r.n_gt for r in sample)
        tool = sum(r.n_tool for r in sample)
        recalls.append(matched / gt if gt else 0.0)
        precisions.append(matched / tool if tool else 0.0)
    recalls.sort()
    precisions.sort()
    lo, hi = int(0.025 * n), int(0.975 * n) - 1
    return (recalls[lo], recalls[hi]), (precisions[lo], precisions[hi])


def varied_articles() -> list[ArticleScore]:
    """Seven articles with different counts, so resamples differ."""
    out = []
    for k, (n_tool, n_gt, n_matched) in enumerate([(4, 3, 2), (0, 2, 0), (2, 1, 1), (1, 0, 0), (5, 5, 5),
                                                    (3, 6, 1), (7, 4, 3)]):
        out.append(ArticleScore(article_id=f"a{k}", source="elife", n_gt=n_gt, n_tool=n_tool, n_matched=n_matched,
                                soft_credit=0.0, pairs=()))
    return out


def test_bootstrap_is_identical_to_the_harness_recipe():
    articles = varied_articles()
    ours = bootstrap_ci(articles, n=1000, alpha=0.05, seed=42)
    recall, precision = harness_bootstrap(articles, 1000)
    assert ours["recall_micro"] == recall
    assert ours["precision_micro"] == precision
    assert recall[0] < recall[1]
    assert ours["seed"] == 42 and ours["n_resamples"] == 1000


def test_bootstrap_f1_interval_comes_from_the_same_resamples():
    articles = varied_articles()
    ours = bootstrap_ci(articles, n=200, seed=7)
    lo, hi = ours["f1_micro_ours"]
    assert 0.0 < lo < hi < 1.0
    # An article set with one value has a degenerate interval for every metric.
    same = [ArticleScore("x", "elife", 4, 2, 2, 0.0, ())] * 3
    ci = bootstrap_ci(same, n=50)
    assert ci["recall_micro"] == (0.5, 0.5)
    assert ci["precision_micro"] == (1.0, 1.0)
    assert ci["f1_micro_ours"] == (pytest.approx(2 / 3), pytest.approx(2 / 3))


@pytest.mark.parametrize("n_items", [1, 2, 3, 7, 600, 1024, 1025])
@pytest.mark.parametrize("seed", [0, 42])
def test_bulk_draws_equal_random_choice_draw_for_draw(seed, n_items):
    rng = random.Random(seed)
    expected = [rng.choice(range(n_items)) for _ in range(n_items * 40)]
    assert harness_choice_indices(seed, n_items, n_items * 40).tolist() == expected


def test_bootstrap_refuses_empty_input():
    with pytest.raises(ValueError, match="at least one article"):
        bootstrap_ci([], n=10)


def test_paired_bootstrap_hand_checked_on_two_articles():
    from bioreview_assets.core.metrics import paired_bootstrap_f1

    # A matches 1 of 2 on the first article, 0 of 2 on the second; B matches nothing. A resample holds article 1
    # twice (A's F1 = 2/4 = 0.5), once (1/4 = 0.25, probability 1/2) or never (0): B is always 0.
    a = [(1, 2, 2), (0, 2, 2)]
    b = [(0, 2, 2), (0, 2, 2)]
    result = paired_bootstrap_f1(a, b, n=2000, seed=7)
    assert result["diff"] == pytest.approx(0.25)
    assert result["diff_ci"] == pytest.approx((0.0, 0.5))
    assert result["share_not_above_zero"] == pytest.approx(0.25, abs=0.03)
    assert result["outcome"] == "no clear difference"  # the interval touches 0
    # The same system against itself: every resample's difference is exactly 0.
    same = paired_bootstrap_f1(a, a, n=200)
    assert same["diff_ci"] == (0.0, 0.0) and same["share_not_above_zero"] == 1.0
    # A clear win: A matches everything on every article.
    win = paired_bootstrap_f1([(2, 2, 2)] * 5, [(1, 2, 2), (0, 2, 2), (1, 2, 2), (0, 2, 2), (1, 2, 2)], n=500)
    assert win["outcome"] == "A better" and win["diff_ci"][0] > 0
    with pytest.raises(ValueError, match="same reference"):
        paired_bootstrap_f1([(1, 2, 2)], [(1, 3, 2)])
    with pytest.raises(ValueError, match="same articles"):
        paired_bootstrap_f1(a, b[:1])


def test_metrics_without_reference_concerns_are_undefined_not_zero():
    """A split whose articles have no reference concerns: recall and F1 are None (shown n/a), precision stays."""
    from bioreview_assets.reporting.formatting import number as fmt

    empty = [score_article(a, "elife", np.zeros((2, 0)), [], 0.5, "hungarian") for a in ("x", "y")]
    m = aggregate(empty)
    assert m["n_gt"] == 0 and m["n_tool"] == 4
    assert (m["recall_micro"], m["f1_micro"], m["recall_major"], m["soft_f1"]) == (None, None, None, None)
    assert (m["f1_category_macro"], m["recall_article_macro"], m["f1_article_macro"]) == (None, None, None)
    assert m["precision_micro"] == 0.0 and fmt(m["f1_micro"]) == "n/a"
    ci = bootstrap_ci(empty, n=20)
    assert ci["recall_micro"] is None and ci["f1_micro_ours"] is None and ci["precision_micro"] == (0.0, 0.0)
