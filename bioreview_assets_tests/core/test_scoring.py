"""score_split / rescore_threshold: one embedding call per split, harness-identical counts, explicit coverage."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.optimize import linear_sum_assignment

from bioreview_assets.core.matcher_spec import EmbedderSpec, MatcherSpec
from bioreview_assets.core.schema import ScorableConcern
from bioreview_assets.core.scoring import ArticleRef, PredictedConcern, rescore_threshold, score_split

EMBEDDER = EmbedderSpec(name="fake", kind="sentence_transformers", model_id="test/fake", pooling="mean")
IDENTITY = {"model_id": "test/fake", "revision": None, "weights_sha256": "feedbeef", "pooling": "mean",
            "adapter": None, "max_seq_length": 128}
SPEC = MatcherSpec(name="fake-0.65", embedder=EMBEDDER, threshold=0.65)

E = np.eye(4)
VECTORS = {
    "sample size too small": E[0],
    "no multiple comparison correction": E[1],
    "cell lines not authenticated": E[2],
    "methods unclear": E[3],
    "prior work missing": 0.6 * E[0] + 0.8 * E[1],
    "few samples": 0.8 * E[0] + 0.6 * E[2],
    "authentication lacking": E[2],
}


class FakeEncoder:
    """Looks texts up in VECTORS and records every call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def __call__(self, texts: list[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.array([VECTORS[t] for t in texts], dtype=np.float32)


def ref(article_id: str, source: str, texts: list[str], categories: list[str] | None = None) -> ArticleRef:
    """An ArticleRef with major concerns (category design_flaw unless given)."""
    cats = categories or ["design_flaw"] * len(texts)
    return ArticleRef(article_id=article_id, source=source, gt=[
        ScorableConcern(concern_id=f"{article_id}#{k}", article_id=article_id, source=source, text=t,
                        category=c, severity="major")
        for k, (t, c) in enumerate(zip(texts, cats))
    ])


ARTICLES = [
    ref("elife:1", "elife", ["sample size too small", "no multiple comparison correction"]),
    ref("elife:2", "elife", ["cell lines not authenticated", "methods unclear"]),
    ref("plos:1", "plos", ["prior work missing"]),
]
PREDICTIONS = {
    "elife:1": [PredictedConcern(text="few samples")],
    # The second concern copies elife:1's reference text: it exercises text dedup and the null.
    "elife:2": [PredictedConcern(text="authentication lacking", category="design_flaw"),
                {"text": "sample size too small"}],
    "ghost:1": [PredictedConcern(text="methods unclear")],
}


def run(spec: MatcherSpec = SPEC, **kwargs):
    """Score the fixture split with a fresh fake encoder."""
    encoder = FakeEncoder()
    result = score_split(ARTICLES, PREDICTIONS, encoder, spec, bootstrap_n=100, embedder_identity=IDENTITY, **kwargs)
    return result, encoder


def test_the_split_is_embedded_in_one_call_of_unique_texts():
    _, encoder = run()
    assert len(encoder.calls) == 1
    texts = encoder.calls[0]
    assert len(texts) == len(set(texts)) == 7
    assert "methods unclear" in texts  # GT text, also predicted for an unknown id: embedded once


def test_counts_and_micro_metrics_by_hand():
    result, _ = run()
    m = result.metrics
    # elife:1 1/2 matched (0.8), elife:2 1/2 (authentication 1.0; the copied text has sim 0 there), plos:1 0/1.
    assert (m["n_gt"], m["n_tool"], m["n_matched"]) == (5, 3, 2)
    assert m["recall_micro"] == pytest.approx(0.4)
    assert m["precision_micro"] == pytest.approx(2 / 3)
    assert m["f1_micro"] == pytest.approx(0.5)
    assert m["count_oracle_f1"] == pytest.approx(2 * (3 / 5) * 1.0 / (3 / 5 + 1.0))
    assert m["matcher_id"] == SPEC.identity(IDENTITY)["hash"]
    assert m["matcher"]["embedder"]["weights_sha256"] == "feedbeef"
    assert m["ci"]["n_resamples"] == 100


def test_missing_articles_count_and_unknown_ids_are_reported_and_ignored():
    result, _ = run()
    rows = {r["article_id"]: r for r in result.articles}
    assert set(rows) == {"elife:1", "elife:2", "plos:1"}
    assert rows["plos:1"]["in_output"] is False
    assert (rows["plos:1"]["n_tool"], rows["plos:1"]["recall"]) == (0, 0.0)
    assert rows["elife:2"]["precision"] == 0.5
    cov = result.metrics["coverage"]
    assert (cov["n_articles_in_output"], cov["n_articles_missing_from_output"]) == (2, 1)
    assert cov["n_unknown_prediction_ids"] == 1
    assert cov["unknown_prediction_ids_sample"] == ["ghost:1"]


def test_match_rows_one_per_reference_plus_unmatched_generated():
    result, _ = run()
    rows = result.matches
    refs = [r for r in rows if r["row_kind"] == "reference"]
    extra = [r for r in rows if r["row_kind"] == "generated_only"]
    assert len(refs) == 5 and len(extra) == 1
    first = refs[0]
    assert (first["gt_concern_id"], first["generated_index"], first["matched"]) == ("elife:1#0", 0, True)
    assert first["similarity"] == pytest.approx(0.8)
    # Unmatched reference: its best generated concern is still shown (sim 0 here), not a pair.
    assert (refs[1]["generated_index"], refs[1]["matched"], refs[1]["similarity"]) == (0, False, 0.0)
    # plos:1 has no generated concerns at all.
    assert (refs[4]["generated_index"], refs[4]["similarity"]) == (None, None)
    assert extra[0]["article_id"] == "elife:2" and extra[0]["generated_index"] == 1
    assert (extra[0]["gt_concern_id"], extra[0]["gt_index"], extra[0]["category"]) == (None, None, None)
    assert all(set(r) == set(rows[0]) for r in rows)  # one schema for the parquet table


def test_input_fingerprints_change_with_references_or_predictions():
    base, _ = run()
    recategorised = {**PREDICTIONS, "elife:1": [PredictedConcern(text="few samples", category="other")]}
    changed = score_split(ARTICLES, recategorised, FakeEncoder(), SPEC, bootstrap_n=0, embedder_identity=IDENTITY)
    fp, fp2 = base.metrics["input_fingerprints"], changed.metrics["input_fingerprints"]
    assert fp["references"] == fp2["references"]
    assert fp["predictions"] != fp2["predictions"]
    # Unknown ids are not part of the scored input.
    unknown_only = score_split(ARTICLES, {k: v for k, v in PREDICTIONS.items() if k != "ghost:1"}, FakeEncoder(),
                               SPEC, bootstrap_n=0, embedder_identity=IDENTITY)
    assert unknown_only.metrics["input_fingerprints"] == fp


def test_null_uses_another_articles_references():
    result, _ = run()
    null = result.metrics["null"]
    # elife:1 <-> elife:2 swap; plos:1 is alone and borrows an eLife article (reported).
    # Only elife:2's copied text matches elife:1's reference: 1 match; n_gt = 2 + 2 + 2.
    assert null["cross_source_articles"] == ["plos:1"]
    assert (null["n_matched"], null["n_gt"], null["n_tool"]) == (1, 6, 3)
    assert result.metrics["null_f1"] == pytest.approx(2 * (1 / 3) * (1 / 6) / (1 / 3 + 1 / 6))


def test_rescore_threshold_equals_a_fresh_score_without_embedding():
    first, encoder = run()
    again = rescore_threshold(first.similarities, 0.55, bootstrap_n=100)
    fresh, _ = run(SPEC.model_copy(update={"threshold": 0.55}))
    assert len(encoder.calls) == 1
    assert again.metrics == fresh.metrics
    assert again.matches == fresh.matches
    # At 0.55 elife:1's "few samples" vs elife:2's cell-line reference (0.6) also matches in the null.
    assert again.metrics["null"]["n_matched"] == 2
    assert again.metrics["matcher_id"] != first.metrics["matcher_id"]


def test_threshold_curve_and_histograms_are_reported():
    result, _ = run()
    curve = result.metrics["threshold_curve"]
    assert [c["configured_threshold"] for c in curve][:2] == [0.3, 0.35]
    at_065 = next(c for c in curve if c["configured_threshold"] == 0.65)
    assert at_065["f1"] == pytest.approx(result.metrics["f1_micro"])
    assert sum(result.histograms["matched"]) == 2
    assert sum(result.histograms["own_best"]) == 3
    assert sum(result.histograms["null_best"]) == 3


def test_category_agreement_blocks_pairs_of_different_categories():
    spec = SPEC.model_copy(update={"require_category_agreement": True})
    result, _ = run(spec)
    # Only "authentication lacking" carries a category (design_flaw, equal to the reference's): 1 match left.
    assert result.metrics["n_matched"] == 1
    assert result.metrics["matcher"]["require_category_agreement"] is True


def test_lexical_matcher_uses_jaccard_at_scaled_threshold_and_no_encoder():
    spec = MatcherSpec(name="jaccard", method="lexical")
    articles = [ref("elife:9", "elife", ["the cell line is not authenticated"])]
    preds = {"elife:9": [PredictedConcern(text="cell line authentication missing"),
                         PredictedConcern(text="statistics unclear")]}
    result = score_split(articles, preds, None, spec, bootstrap_n=0)
    m = result.metrics
    # Jaccard 2/7 = 0.286 >= 0.65 * 0.3 = 0.195.
    assert (m["n_matched"], m["recall_micro"], m["precision_micro"]) == (1, 1.0, 0.5)
    assert m["effective_threshold"] == pytest.approx(0.195)
    assert result.matches[0]["similarity"] == pytest.approx(2 / 7)
    assert m["ci"] is None
    assert m["null"] == {"status": "not computed: a shuffled null needs at least two articles"}
    assert m["null_f1"] is None


def test_method_and_encoder_must_agree_and_identity_is_required():
    with pytest.raises(ValueError, match="pass `encode`"):
        score_split(ARTICLES, PREDICTIONS, None, SPEC, embedder_identity=IDENTITY)
    with pytest.raises(ValueError, match="must be None"):
        score_split(ARTICLES, PREDICTIONS, FakeEncoder(), MatcherSpec(name="j", method="lexical"))
    encoder = FakeEncoder()
    with pytest.raises(ValueError, match="weights_sha256"):
        score_split(ARTICLES, PREDICTIONS, encoder, SPEC)
    assert encoder.calls == []  # refused before any embedding work


def test_unnormalised_or_misshaped_embeddings_are_refused():
    with pytest.raises(ValueError, match="L2-normalised"):
        score_split(ARTICLES, PREDICTIONS, lambda t: 2 * FakeEncoder()(t), SPEC, embedder_identity=IDENTITY)
    with pytest.raises(ValueError, match="shape"):
        score_split(ARTICLES, PREDICTIONS, lambda t: FakeEncoder()(t)[:-1], SPEC, embedder_identity=IDENTITY)


def test_duplicate_split_ids_and_foreign_concerns_are_refused():
    with pytest.raises(ValueError, match="duplicate article ids"):
        score_split([ARTICLES[0], ARTICLES[0]], {}, FakeEncoder(), SPEC, embedder_identity=IDENTITY)
    with pytest.raises(ValidationError, match="another article"):
        ArticleRef(article_id="elife:1", source="elife", gt=list(ARTICLES[1].gt))


def hashed_unit(text: str, dim: int = 8) -> np.ndarray:
    """Deterministic pseudo-random unit vector of a text."""
    seed = int(hashlib.sha256(text.encode()).hexdigest()[:8], 16)
    v = np.random.default_rng(seed).normal(size=dim)
    return (v / np.linalg.norm(v)).astype(np.float32)


def test_counts_equal_an_independent_per_article_harness_loop():
    rng = np.random.default_rng(0)
    articles, preds = [], {}
    for a in range(40):
        aid = f"peerj:{a}"
        articles.append(ref(aid, "peerj" if a % 3 else "plos", [f"ref {a} {k}" for k in range(rng.integers(0, 6))]))
        if a % 7:
            preds[aid] = [PredictedConcern(text=f"gen {a} {k}") for k in range(rng.integers(0, 7))]
    encode = lambda texts: np.stack([hashed_unit(t) for t in texts])  # noqa: E731
    spec = SPEC.model_copy(update={"threshold": 0.3})
    ours = score_split(articles, preds, encode, spec, bootstrap_n=0, embedder_identity=IDENTITY)
    # Upstream loop: two encode calls per article, float32 matrix -> Python floats, cost 1 - S / 1e6, keep >= t.
    total_matched = 0
    for article, row in zip(articles, ours.articles):
        tool = [p.text for p in preds.get(article.article_id, [])]
        gt = [c.text for c in article.gt]
        matched = 0
        if tool and gt:
            s = (encode(tool) @ encode(gt).T).tolist()
            cost = [[1.0 - v if v >= 0.3 else 1e6 for v in r] for r in s]
            rows, cols = linear_sum_assignment(np.array(cost))
            matched = sum(1 for i, j in zip(rows, cols) if s[i][j] >= 0.3)
        assert row["n_matched"] == matched, article.article_id
        total_matched += matched
    assert ours.metrics["n_matched"] == total_matched > 0
