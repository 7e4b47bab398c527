"""Matcher controls: shuffled null, count oracle, threshold curve, histograms.

Why: docs/reference.md, harness W1 and the reference pipeline's W2."""

from __future__ import annotations

import numpy as np
import pytest

from bioreview_assets.core.diagnostics import (
    DEFAULT_BINS,
    DEFAULT_THRESHOLDS,
    count_oracle,
    null_pairing,
    null_sims,
    row_best,
    score_null,
    similarity_histograms,
    threshold_curve,
)
from bioreview_assets.core.metrics import ArticleScore


def shuffled_null(ids, sources, pair_sim, threshold, algorithm, seed=42):
    """Null F1 as the scorer computes it: each article's concerns vs its derangement partner's references."""
    pairing = null_pairing(ids, sources, seed)
    return score_null(pairing, null_sims(pairing, pair_sim), threshold, algorithm)

IDS = ["elife:1", "elife:2", "elife:3", "plos:1", "plos:2", "nature:1"]
SOURCES = ["elife", "elife", "elife", "plos", "plos", "nature"]


def test_null_pairing_is_a_same_source_derangement_and_deterministic():
    pairing = null_pairing(IDS, SOURCES, seed=3)
    for i, partner in enumerate(pairing.partners):
        assert partner != i
        if SOURCES[i] != "nature":
            assert SOURCES[partner] == SOURCES[i]
    # Within a source of size >= 2 every article's references are used exactly once.
    assert sorted(pairing.partners[:3]) == [0, 1, 2]
    assert sorted(pairing.partners[3:5]) == [3, 4]
    assert pairing == null_pairing(IDS, SOURCES, seed=3)


def test_an_article_alone_in_its_source_pairs_across_sources_and_is_reported():
    pairing = null_pairing(IDS, SOURCES, seed=3)
    assert pairing.cross_source == ("nature:1",)
    assert SOURCES[pairing.partners[5]] != "nature"


def test_null_pairing_needs_two_articles():
    with pytest.raises(ValueError, match="at least two"):
        null_pairing(["elife:1"], ["elife"])


def test_shuffled_null_scores_against_partner_references():
    # Each article has one generated concern that is identical to its own reference (sim 1) and
    # unrelated to everyone else's (sim 0.1): own F1 would be 1, the null must be 0.
    calls = []

    def pair_sim(i: int, j: int):
        calls.append((i, j))
        return np.array([[1.0 if i == j else 0.1]]), None

    null = shuffled_null(IDS, SOURCES, pair_sim, threshold=0.5, algorithm="hungarian", seed=1)
    assert len(calls) == len(IDS) and all(i != j for i, j in calls)
    assert (null.n_tool, null.n_gt, null.n_matched, null.f1) == (6, 6, 0, 0.0)
    assert null.best_sims.tolist() == [0.1] * 6
    assert null.summary()["cross_source_articles"] == ["nature:1"]


def test_shuffled_null_of_a_count_matcher_is_as_high_as_the_real_score():
    # A matcher that calls everything similar (the harness W1 symptom) matches the wrong article just as well.
    null = shuffled_null(IDS, SOURCES, lambda i, j: (np.full((2, 3), 0.9), None), 0.65, "hungarian")
    assert null.n_matched == 12
    assert null.recall == pytest.approx(12 / 18)
    assert null.precision == 1.0


def test_count_oracle_matches_min_of_counts():
    scores = [ArticleScore("a", "elife", n_gt=3, n_tool=5, n_matched=1, soft_credit=0.0, pairs=()),
              ArticleScore("b", "elife", n_gt=4, n_tool=2, n_matched=0, soft_credit=0.0, pairs=())]
    oracle = count_oracle(scores)
    # min(5,3) + min(2,4) = 5 matched; R = 5/7, P = 5/7.
    assert oracle["n_matched"] == 5
    assert oracle["recall"] == pytest.approx(5 / 7)
    assert oracle["precision"] == pytest.approx(5 / 7)
    assert oracle["f1"] == pytest.approx(5 / 7)


def test_threshold_curve_rematches_stored_matrices():
    sims = [np.array([[0.9, 0.4], [0.5, 0.7]]), np.array([[0.35]])]
    curve = threshold_curve(sims, thresholds=(0.3, 0.6, 0.95))
    # n_gt = 3, n_tool = 3. t=0.3: 2 + 1 matched; t=0.6: (0,0),(1,1) -> 2; t=0.95: 0.
    assert curve[0] == (0.3, 1.0, 1.0, 1.0)
    assert curve[1] == (0.6, pytest.approx(2 / 3), pytest.approx(2 / 3), pytest.approx(2 / 3))
    assert curve[2] == (0.95, 0.0, 0.0, 0.0)
    # A mask removes the diagonal pairs: at 0.3 only (0,1)=0.4, (1,0)=0.5 and the second article remain.
    masked = threshold_curve(sims, (0.3,), masks=[np.array([[False, True], [True, False]]), None])
    assert masked[0] == (0.3, 1.0, 1.0, 1.0)
    assert threshold_curve(sims, (0.45,), masks=[np.array([[False, True], [True, False]]), None])[0][1] == 1 / 3
    with pytest.raises(ValueError, match="masks"):
        threshold_curve(sims, masks=[None])


def test_score_null_refuses_bare_matrices():
    pairing = null_pairing(IDS[:2], SOURCES[:2])
    with pytest.raises(TypeError, match="tuples"):
        score_null(pairing, [np.zeros((2, 2)), np.zeros((2, 2))], 0.5, "hungarian")


def test_default_thresholds_are_the_rounded_grid():
    assert DEFAULT_THRESHOLDS[0] == 0.3 and DEFAULT_THRESHOLDS[-1] == 0.95
    assert len(DEFAULT_THRESHOLDS) == 14
    assert 0.35 in DEFAULT_THRESHOLDS  # np.arange would give 0.35000000000000003
    assert np.allclose(DEFAULT_THRESHOLDS, np.arange(0.30, 0.951, 0.05))


def test_histograms_share_one_grid_and_keep_values_just_above_one():
    matched = np.array([0.9, 1.0000001, 0.66])
    own = row_best(np.array([[0.2, 0.9], [0.66, 0.1]]))
    assert own.tolist() == [0.9, 0.66]
    hist = similarity_histograms(matched, None, own)
    assert hist["bin_edges"] == list(DEFAULT_BINS)
    assert sum(hist["matched"]) == 3  # 1.0000001 clipped into the last bin, not dropped
    assert hist["matched"][-1] == 1
    assert sum(hist["own_best"]) == 2
    assert hist["null_best"] is None
    # 0.66 falls in [0.65, 0.675): bin index (0.65 + 1) / 0.025 = 66.
    assert hist["own_best"][66] == 1


def test_row_best_is_empty_without_references():
    assert row_best(np.zeros((3, 0))).size == 0
