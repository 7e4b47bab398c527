from __future__ import annotations

import pytest

from bioreview_assets.core.bm25 import MAX_DOC_CHARS, Bm25Baseline, Bm25Doc, article_text_for_bm25, tokenise

STATS_CONCERNS = [
    "The unpaired t-test assumes normality, which is not checked for tumour volumes.",
    "No correction for multiple comparisons across the twelve t-tests.",
]
SHARED = "The sample size justification is missing."

CORPUS = [
    Bm25Doc(
        "elife:stats",
        article_text_for_bm25(
            "Tumour volume in xenograft mice",
            "Tumour volumes were compared with an unpaired Student t-test; p-values below 0.05 were significant.",
            {"Methods": "Tumour volume measured by calipers; unpaired t-test, variance, normality, p-values."},
        ),
        STATS_CONCERNS + [SHARED],
    ),
    Bm25Doc(
        "plos:imaging",
        article_text_for_bm25(
            "Confocal imaging of zebrafish neurons",
            "Confocal microscopy of zebrafish larvae reveals axon branching during development.",
            {"Results": "Axon branching imaged by confocal microscopy in zebrafish larvae."},
        ),
        ["Imaging settings (laser power, gain) are not reported.", SHARED],
    ),
    Bm25Doc(
        "nature:genomics",
        article_text_for_bm25(
            "Single-cell sequencing of liver",
            "Single-cell RNA sequencing of hepatocytes identifies zonation genes.",
            {"Methods": "Hepatocytes dissociated, libraries sequenced, clusters annotated with marker genes."},
        ),
        ["Batch effects between sequencing runs are not addressed.", SHARED],
    ),
    Bm25Doc(
        "peerj:trial",
        article_text_for_bm25(
            "Vitamin supplementation trial",
            "A randomised placebo-controlled trial of vitamin supplementation in elderly patients.",
            {"Methods": "Patients randomised to vitamin or placebo; outcomes blinded."},
        ),
        ["Allocation concealment is not described."],
    ),
    Bm25Doc(
        "f1000:tumour2",
        article_text_for_bm25(
            "Tumour growth kinetics",
            "Tumour growth in mice compared between two diets.",
            {"Methods": "Growth curves fitted per mouse."},
        ),
        ["Growth curves should be modelled with mixed effects.", SHARED],
    ),
]
QUERY = article_text_for_bm25(
    "Drug effect on tumour volume",
    "We compared tumour volume between treated and control mice using an unpaired t-test with p-values.",
    {},
)


def test_tokenise_lowercases_and_drops_short_and_stop_words():
    assert tokenise("The T-test, p-values AND RNA-seq of 12 mice (n=5) in 2024") == [
        "test",
        "values",
        "rna",
        "seq",
        "mice",
        "2024",
    ]


def test_t_test_query_returns_statistics_concerns_of_the_nearest_article_first():
    baseline = Bm25Baseline(CORPUS)
    ranked = baseline.ranked_docs(QUERY)
    assert ranked[0][0].article_id == "elife:stats"
    assert ranked[1][0].article_id == "f1000:tumour2" and ranked[1][1] > 0
    predicted = baseline.predict(QUERY)
    # SHARED is carried by the top two documents: score_1 / 1 + score_2 / 2 puts it ahead of the
    # t-test article's own concerns, which follow in their original order.
    assert predicted[:3] == [SHARED, *STATS_CONCERNS]
    assert len(predicted) == len(set(predicted)) == 7  # every distinct concern of the 5 documents


def test_scores_are_summed_over_documents_divided_by_rank():
    baseline = Bm25Baseline(CORPUS)
    ranked = baseline.ranked_docs(QUERY)
    expected: dict[str, float] = {}
    for rank, (doc, score) in enumerate(ranked, start=1):
        for concern in doc.concerns:
            expected[concern] = expected.get(concern, 0.0) + score / rank
    predicted = baseline.predict(QUERY)
    assert [expected[text] for text in predicted] == sorted(expected.values(), reverse=True)
    shared_score = sum(score / rank for rank, (doc, score) in enumerate(ranked, 1) if SHARED in doc.concerns)
    assert expected[SHARED] == pytest.approx(shared_score)


def test_lower_ranked_documents_count_less():
    docs = [
        Bm25Doc("d:1", "alpha beta gamma delta", ["only in first"]),
        Bm25Doc("d:2", "alpha beta filler", ["in second and third"]),
        Bm25Doc("d:3", "gamma delta filler", ["in second and third"]),
    ] + [Bm25Doc(f"x:{i}", f"unrelated words number{i} lorem ipsum", ["noise"]) for i in range(4)]
    baseline = Bm25Baseline(docs, top_docs=3)
    (_, s1), (_, s2), (_, s3) = baseline.ranked_docs("alpha beta gamma delta")
    # Plain summed scores would put the shared concern first; dividing by rank must not.
    assert s2 + s3 > s1 > s2 / 2 + s3 / 3
    assert baseline.predict("alpha beta gamma delta") == ["only in first", "in second and third"]


def test_top_docs_and_n_concerns_limit_the_output():
    baseline = Bm25Baseline(CORPUS, top_docs=1, n_concerns=2)
    assert baseline.predict(QUERY) == STATS_CONCERNS  # top document only: no bonus for SHARED, ties keep order
    assert len(Bm25Baseline(CORPUS, top_docs=2).ranked_docs(QUERY)) == 2


def test_excluded_ids_are_never_retrieved():
    baseline = Bm25Baseline(CORPUS, top_docs=1)
    predicted = baseline.predict(QUERY, exclude_ids={"elife:stats"})
    assert not set(predicted) & set(STATS_CONCERNS)
    assert baseline.ranked_docs(QUERY, exclude_ids={"elife:stats"})[0][0].article_id == "f1000:tumour2"


def test_query_without_tokens_is_an_error():
    with pytest.raises(ValueError, match="indexable"):
        Bm25Baseline(CORPUS).predict("a an of 12 !!")


def test_article_text_is_capped_and_longer_docs_are_refused():
    text = article_text_for_bm25("T", "A" * 30_000, {"Methods": "M" * 30_000})
    assert len(text) == MAX_DOC_CHARS and text.startswith("T\n\nAAA")
    with pytest.raises(ValueError, match="article_text_for_bm25"):
        Bm25Doc("x:1", "z" * (MAX_DOC_CHARS + 1), [])


def test_constructor_validation():
    with pytest.raises(ValueError):
        Bm25Baseline([])
    with pytest.raises(ValueError):
        Bm25Baseline(CORPUS, top_docs=0)
    with pytest.raises(ValueError, match="indexable"):
        Bm25Baseline([Bm25Doc("x:1", "a an of", [])])
