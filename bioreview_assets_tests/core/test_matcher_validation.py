"""Matcher validation: P/R/F1 of "same concern" at the threshold, the curve, kappa, the labelled-pairs file."""

from __future__ import annotations

import numpy as np
import pytest

from bioreview_assets.core.matcher_validation import (
    LabelledPair, agreement, cohen_kappa, consensus, parse_labelled_pairs, prf_at, validate_matcher,
)


def test_kappa_on_a_hand_labelled_toy_set():
    # Ten pairs. Ann says same on 1-5, Bob on 1-4 and 6. Agree on 8 of 10: po = 0.8.
    # pA(yes) = 0.5, pB(yes) = 0.5 -> chance = 0.5*0.5 + 0.5*0.5 = 0.5 -> kappa = (0.8 - 0.5) / 0.5 = 0.6.
    ann = [True] * 5 + [False] * 5
    bob = [True] * 4 + [False, True] + [False] * 4
    assert cohen_kappa(ann, bob) == pytest.approx(0.6)
    assert cohen_kappa(ann, ann) == pytest.approx(1.0)
    assert cohen_kappa(ann, [not x for x in ann]) == pytest.approx(-1.0)
    pairs = [LabelledPair(f"concern a{i}", f"concern b{i}", lab, who)
             for who, labels in (("ann", ann), ("bob", bob)) for i, lab in enumerate(labels)]
    (row,) = agreement(pairs)
    assert row["annotators"] == ["ann", "bob"] and row["n_pairs"] == 10
    assert row["kappa"] == pytest.approx(0.6) and row["observed_agreement"] == pytest.approx(0.8)
    kept, ties = consensus(pairs)
    assert ties == 2 and len(kept) == 8  # the two disagreements are 1-1 ties


def test_prf_and_best_threshold_by_hand():
    sims = [0.9, 0.8, 0.7, 0.6, 0.5, 0.4]
    labels = [True, True, False, True, False, False]
    at = prf_at(np.array(sims), np.array(labels), 0.65)  # called same: 0.9, 0.8, 0.7 -> tp 2, fp 1, fn 1
    assert (at["tp"], at["fp"], at["fn"]) == (2, 1, 1)
    assert at["precision"] == pytest.approx(2 / 3) and at["recall"] == pytest.approx(2 / 3)
    result = validate_matcher(sims, labels, 0.65, [0.55, 0.65, 0.75, 0.85], n_bootstrap=200)
    # 0.55: tp 3 fp 1 -> P 0.75 R 1 F1 6/7; 0.75: tp 2 fp 0 -> P 1 R 2/3 F1 0.8; 0.85: F1 0.5.
    assert [round(r["f1"], 4) for r in result["curve"]] == [round(6 / 7, 4), round(2 / 3, 4), 0.8, 0.5]
    assert result["best_threshold"] == 0.55
    lo, hi = result["ci"]["f1"]
    assert lo <= result["f1"] <= hi
    with pytest.raises(ValueError, match="both"):
        validate_matcher([0.9], [True], 0.5, [0.5])


def test_labelled_pairs_from_csv_and_jsonl():
    csv_text = ("text_a,text_b,label,annotator\n"
                "\"Too few mice.\",\"The sample is small.\",1,ann\n"
                "\"Too few mice.\",\"Define ROS.\",no,ann\n"
                "\"Unlabelled yet.\",\"Still open.\",,ann\n")
    pairs = parse_labelled_pairs(csv_text, "labels.csv")
    assert [(p.label, p.annotator) for p in pairs] == [(True, "ann"), (False, "ann")]
    jsonl = '{"text_a": "A b c d.", "text_b": "E f g h.", "label": true}\n'
    assert parse_labelled_pairs(jsonl)[0].annotator == "unknown"
    with pytest.raises(ValueError, match="labels.csv:2: label 'maybe'"):
        parse_labelled_pairs("text_a,text_b,label\nx,y,maybe\n", "labels.csv")
    with pytest.raises(ValueError, match="header lacks"):
        parse_labelled_pairs("a,b\n1,2\n", "bad.csv")


def test_label_export_sample_is_stratified_around_the_threshold_and_deterministic():
    from bioreview_assets.core.matcher_validation import similarity_strata, stratified_pairs

    strata = similarity_strata(0.65, 0.1, 3)
    assert [round(hi, 2) for _, hi in strata[:-1]] == [0.45, 0.55, 0.65, 0.75, 0.85]
    # 100 pairs at 0.05..0.99 (most far below the threshold) plus duplicates in both orders.
    candidates = [{"text_a": f"a{i}", "text_b": f"b{i}", "similarity": 0.05 + 0.0094 * i} for i in range(100)]
    candidates += [{"text_a": "b3", "text_b": "a3", "similarity": 0.08}, {"text_a": "same", "text_b": "same",
                                                                          "similarity": 1.0}]
    picked = stratified_pairs(candidates, 0.65, 30, seed=1)
    assert len(picked) == 30 and len({(r["text_a"], r["text_b"]) for r in picked}) == 30
    assert all(r["text_a"] != r["text_b"] for r in picked)
    per_bin = [sum(lo <= r["similarity"] < hi for r in picked) for lo, hi in strata]
    assert per_bin == [5] * 6  # equal shares: uniform candidates would have given 40+ of 100 below 0.45
    assert picked == stratified_pairs(candidates, 0.65, 30, seed=1)
    assert len(stratified_pairs(candidates, 0.65, 500)) == 100  # never more than there are


def test_a_judge_matcher_is_validated_on_its_verdicts():
    from bioreview_assets.core.matcher_spec import EmbedderSpec, JudgeSpec, MatcherSpec
    from bioreview_assets.core.matcher_validation import validate_labelled_pairs

    spec = MatcherSpec(name="j", method="llm_judge", threshold=0.5,
                       embedder=EmbedderSpec(name="f", kind="sentence_transformers", model_id="t/f"),
                       judge=JudgeSpec(api_base="http://127.0.0.1:9/v1", api_model="m", prefilter_threshold=0.5))
    vectors = {"a": [1.0, 0.0], "b": [0.8, 0.6], "c": [0.0, 1.0], "d": [0.6, 0.8]}
    asked = []

    def judge(pairs):
        asked.extend(pairs)
        return [p != ("a", "b") for p in pairs]  # the judge calls a-b different, everything else same

    pairs = [LabelledPair("a", "b", True, "x"), LabelledPair("c", "d", True, "x"), LabelledPair("a", "c", False, "x"),
             LabelledPair("b", "d", True, "x")]
    result = validate_labelled_pairs(spec, lambda texts: np.array([vectors[t] for t in texts]), pairs, [0.5],
                                     n_bootstrap=10, judge=judge)
    assert asked == [("a", "b"), ("c", "d"), ("b", "d")]  # a-c (cosine 0) is pre-filtered out
    # Said same: c-d and b-d (both labelled same); a-b missed -> P 1, R 2/3.
    assert (result["tp"], result["fp"], result["fn"]) == (2, 0, 1)
