"""BM25 retrieval baseline: copy the reference concerns of the most similar training articles.

Semantics of the benchmark's `lexical.py` (docs/reference.md: harness §4): index = training articles (title +
abstract + sections, at most 40,000 characters), tokens `[A-Za-z0-9]+` lower-cased of length >= 3
minus a small stop list, rank_bm25.BM25Okapi(k1=1.5, b=0.75). For a query article: take the top 8
documents; each concern text of those documents scores sum(doc_score / doc_rank) over the documents
that carry it; return the 12 best distinct texts.

Difference from upstream: upstream copied every reference concern, figure ones included. Here the
caller passes each training article's concerns AFTER the shared GT filter (non-figure concerns
only), so the baseline never emits a concern the scorer would not count as a reference concern.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass

import numpy as np
from rank_bm25 import BM25Okapi

MAX_DOC_CHARS = 40_000
K1 = 1.5
B = 0.75
MIN_TOKEN_LEN = 3
STOP_WORDS: frozenset[str] = frozenset(
    """
    the and for with that this from are was were been being have has had not but can could
    which who whom whose their they them these those there here into onto than then also such
    our its all any may might between other more most each both only over under very will would
    should using used use via within without where when what how why after before while
    """.split()
)
_TOKEN = re.compile(r"[A-Za-z0-9]+")


@dataclass
class Bm25Doc:
    """One training article: id, indexed text (see article_text_for_bm25) and its GT-filtered concerns."""

    article_id: str
    text: str
    concerns: list[str]

    def __post_init__(self) -> None:
        # The cap is part of the baseline's definition; longer text means the caller skipped it.
        if len(self.text) > MAX_DOC_CHARS:
            raise ValueError(
                f"{self.article_id}: text has {len(self.text)} chars > {MAX_DOC_CHARS}; "
                "build it with article_text_for_bm25"
            )


def tokenise(text: str) -> list[str]:
    """Lower-cased alphanumeric tokens of length >= 3, stop words removed."""
    tokens = (token.lower() for token in _TOKEN.findall(text))
    return [token for token in tokens if len(token) >= MIN_TOKEN_LEN and token not in STOP_WORDS]


def article_text_for_bm25(title: str, abstract: str, sections: Mapping[str, str]) -> str:
    """Title + abstract + section texts (in the given order), cut at MAX_DOC_CHARS characters."""
    parts = [title, abstract, *sections.values()]
    return "\n\n".join(part for part in parts if part)[:MAX_DOC_CHARS]


class Bm25Baseline:
    """BM25 index over training articles that predicts concerns by copying neighbours' concerns."""

    def __init__(self, train_docs: list[Bm25Doc], top_docs: int = 8, n_concerns: int = 12) -> None:
        if not train_docs:
            raise ValueError("BM25 baseline needs at least one training document")
        if top_docs < 1 or n_concerns < 1:
            raise ValueError(f"top_docs and n_concerns must be >= 1, got {top_docs} and {n_concerns}")
        corpus = [tokenise(doc.text) for doc in train_docs]
        if not any(corpus):
            raise ValueError("no training document has an indexable token")
        self.docs = list(train_docs)
        self.top_docs = top_docs
        self.n_concerns = n_concerns
        self._index = BM25Okapi(corpus, k1=K1, b=B)

    def ranked_docs(self, query_text: str, exclude_ids: Collection[str] = frozenset()) -> list[tuple[Bm25Doc, float]]:
        """The top_docs documents for the query with their BM25 scores, best first (ties: index order)."""
        tokens = tokenise(query_text)
        if not tokens:
            raise ValueError("query has no indexable token; the BM25 baseline cannot rank documents")
        scores = np.asarray(self._index.get_scores(tokens))
        order = sorted(range(len(self.docs)), key=lambda i: (-scores[i], i))
        kept = [i for i in order if self.docs[i].article_id not in exclude_ids][: self.top_docs]
        return [(self.docs[i], float(scores[i])) for i in kept]

    def predict(self, query_text: str, exclude_ids: Collection[str] = frozenset()) -> list[str]:
        """Up to n_concerns distinct concern texts of the top documents, by sum(doc_score / doc_rank)."""
        totals: dict[str, float] = {}  # insertion order breaks score ties: earlier document, earlier concern
        for rank, (doc, score) in enumerate(self.ranked_docs(query_text, exclude_ids), start=1):
            for concern in doc.concerns:
                totals[concern] = totals.get(concern, 0.0) + score / rank
        best = sorted(totals, key=lambda text: -totals[text])
        return best[: self.n_concerns]
