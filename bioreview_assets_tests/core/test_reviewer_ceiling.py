"""The reviewer ceiling: leave one reviewer out, scored by the same matcher, null across articles, CI over articles."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from bioreview_assets.core.diagnostics import grouped_null_pairing
from bioreview_assets.core.metrics import fold_by_cluster, score_article
from bioreview_assets.core.reviewer_ceiling import (
    reviewer_predictions, reviewer_refs, reviewer_units, unit_article, unit_id,
)
from bioreview_assets.core.schema import Article, ScorableConcern
from bioreview_assets.core.scoring import score_split
from bioreview_assets.sample.generator import generate_sample_splits
from bioreview_assets_tests.core.test_scoring import IDENTITY, SPEC  # the same fake embedder and matcher

E = np.eye(4)
VECTORS = {
    "The sample size is far too small.": E[0],                       # reviewer 1
    "No correction for multiple comparisons.": E[1],                 # reviewer 1
    "Too few animals per group were used.": E[0],                    # reviewer 2: same flaw as 1's first
    "Cell lines were never authenticated.": E[2],                    # reviewer 2
    "The cell line identity is unverified.": 0.8 * E[2] + 0.6 * E[3],  # reviewer 3: 0.8 to reviewer 2's second
    "Writing is unclear in the methods.": E[3],                      # reviewer 3
    "Multiple testing is not adjusted for.": 0.6 * E[1] + 0.8 * E[3],  # reviewer 3: 0.6 to reviewer 1's (< 0.65)
    "Data are only available on request.": E[3],
    "The data should be deposited publicly.": E[3],
    "Figure 2 has no error bars at all.": E[0],
}


def encode(texts):
    return np.array([VECTORS[t] for t in texts], dtype=np.float32)


def as_dicts(predictions):
    return {uid: [{"text": c.text, "category": c.category, "severity": c.severity} for c in items]
            for uid, items in predictions.items()}


def article(aid: str, by_reviewer: dict[int, list[str]], figure: set[str] = frozenset(), source="elife") -> Article:
    row = copy.deepcopy(generate_sample_splits(sizes={"val": 1})["val"][0])
    base = {k: v for k, v in row["concerns"][0].items()}
    row["id"], row["source"] = aid, source
    row["concerns"] = [
        {**base, "concern_id": f"{aid}:R{r}C{i}", "reviewer_num": r, "concern_text": text, "source": source,
         "category": "figure_issue" if text in figure else "design_flaw", "severity": "major",
         "requires_figure_reading": text in figure}
        for r, texts in by_reviewer.items() for i, text in enumerate(texts, 1)
    ]
    return Article.model_validate(row)


TOY = article("elife:toy", {
    1: ["The sample size is far too small.", "No correction for multiple comparisons."],
    2: ["Too few animals per group were used.", "Cell lines were never authenticated."],
    3: ["The cell line identity is unverified.", "Writing is unclear in the methods.",
        "Multiple testing is not adjusted for."],
})


def test_units_leave_one_reviewer_out():
    units = reviewer_units([TOY])
    assert [u.unit_id for u in units] == [unit_id("elife:toy", r) for r in (1, 2, 3)]
    assert unit_article(units[2].unit_id) == "elife:toy"
    assert [len(u.own) for u in units] == [2, 2, 3]
    assert [len(u.others) for u in units] == [5, 5, 4]
    assert all(c.article_id == u.unit_id for u in units for c in u.others)
    assert "Too few animals per group were used." not in [c.text for c in units[1].others]


def test_hand_computed_ceiling_on_a_three_reviewer_article():
    refs, clusters = reviewer_refs([TOY])
    preds = as_dicts(reviewer_predictions([TOY]))
    result = score_split(refs, preds, encode, SPEC, bootstrap_n=50, embedder_identity=IDENTITY, clusters=clusters)
    # Reviewer 1 vs {2, 3}: only "sample size" = "too few animals" (1.0); multiple testing is 0.6 < 0.65 -> 1 of 2.
    # Reviewer 2 vs {1, 3}: too few animals (1.0) and cell lines (0.8) -> 2 of 2.
    # Reviewer 3 vs {1, 2}: cell line identity (0.8) only -> 1 of 3.
    assert [(s.n_matched, s.n_tool, s.n_gt) for s in result.article_scores] == [(1, 2, 5), (2, 2, 5), (1, 3, 4)]
    m = result.metrics
    assert (m["n_matched"], m["n_tool"], m["n_gt"]) == (4, 7, 14)
    assert m["recall_micro"] == pytest.approx(2 / 7)
    assert m["precision_micro"] == pytest.approx(4 / 7)
    assert m["f1_micro"] == pytest.approx(8 / 21)
    # One article is one cluster: the bootstrap resamples it whole, so the interval collapses onto the estimate.
    assert m["n_clusters"] == 1
    assert m["ci"]["f1_micro_ours"] == pytest.approx((8 / 21, 8 / 21))
    assert m["null"] == {"status": "not computed: a shuffled null needs at least two clusters"}
    # Count oracle: min(n_tool, n_gt) per unit = 2 + 2 + 3.
    assert m["count_oracle"]["n_matched"] == 7


def test_single_reviewer_articles_and_figure_concerns_are_left_out():
    lone = article("elife:lone", {1: ["The sample size is far too small.", "Writing is unclear in the methods."]})
    # Reviewer 2's only concern is a flagged figure concern: after the harness filter one reviewer is left.
    figure_only = article("elife:fig", {1: ["The sample size is far too small."],
                                        2: ["Figure 2 has no error bars at all."]},
                          figure={"Figure 2 has no error bars at all."})
    assert reviewer_units([lone, figure_only]) == []
    assert [u.reviewer for u in reviewer_units([lone, TOY])] == [1, 2, 3]


def test_the_null_never_pairs_two_reviewers_of_one_article():
    other = article("elife:two", {1: ["Data are only available on request."],
                                  2: ["The data should be deposited publicly."]})
    refs, clusters = reviewer_refs([TOY, other])
    preds = as_dicts(reviewer_predictions([TOY, other]))
    result = score_split(refs, preds, encode, SPEC, bootstrap_n=50, embedder_identity=IDENTITY, clusters=clusters)
    pairing = result.similarities.null_pairing
    assert all(clusters[i] != clusters[p] for i, p in enumerate(pairing.partners))
    assert result.metrics["n_clusters"] == 2
    # Toy units 1, 2, 3 meet units 1, 2, 1 of the other article (one reference each, E[3]); its units meet toy
    # units 1 and 2. Matches: toy reviewer 3's "Writing is unclear" (E[3]), and each other-article concern (E[3])
    # with "Writing is unclear" among the toy references of units 1 and 2 -> 3 null matches.
    assert pairing.partners == (3, 4, 3, 0, 1)
    assert result.metrics["null"]["n_matched"] == 3


def test_grouped_null_pairing_cycles_partner_units():
    pairing = grouped_null_pairing(["a1", "a2", "a3", "b1"], ["x"] * 4, ["a", "a", "a", "b"])
    assert pairing.partners == (3, 3, 3, 0)
    with pytest.raises(ValueError, match="two groups"):
        grouped_null_pairing(["a1", "a2"], ["x", "x"], ["a", "a"])


def test_fold_by_cluster_sums_counts_and_keeps_micro_scores():
    gt = [ScorableConcern(concern_id=f"c{k}", article_id="u", source="elife", text="t", category="other",
                          severity="major") for k in range(2)]
    a = score_article("u1", "elife", np.array([[0.9, 0.1]]), gt, 0.65, "hungarian")
    b = score_article("u2", "elife", np.array([[0.1, 0.2], [0.0, 0.7]]), gt, 0.65, "hungarian")
    folded = fold_by_cluster([a, b], ["art", "art"])
    assert [(f.article_id, f.n_matched, f.n_tool, f.n_gt) for f in folded] == [("art", 2, 3, 4)]
    with pytest.raises(ValueError):
        fold_by_cluster([a], ["x", "y"])
