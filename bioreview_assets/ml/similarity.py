"""Similarity functions for post-processing and ensembles, from a named matcher config (cached embeddings)."""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from bioreview_assets.config import loader
from bioreview_assets.store.artifacts import ArtifactStore

SimilarityFn = Callable[[list[str], list[str]], np.ndarray]


@functools.lru_cache(maxsize=4)
def matcher_embedder(matcher_name: str):
    """The loaded, sanity-probed embedder of a matcher (fails closed: EmbedderUnavailable)."""
    from bioreview_assets.ml.embedders import load_embedder, sanity_probe

    spec = loader.load_matcher(matcher_name)
    if spec.embedder is None:
        raise ValueError(f"matcher {matcher_name!r} has no embedder (method {spec.method!r})")
    embedder = load_embedder(spec.embedder)
    sanity_probe(embedder, max_unrelated=spec.embedder.probe_max_unrelated)
    return embedder


def embedding_cache(store: ArtifactStore):
    """The embedding cache under the storage root (shared by scoring, dedup and ensembles)."""
    from bioreview_assets.store.embedding_cache import EmbeddingCache

    return EmbeddingCache(store.url("embedding_cache"))


def cached_encoder(matcher_name: str, store: ArtifactStore) -> Callable[[list[str]], np.ndarray]:
    """encode(texts) through the store's embedding cache for the matcher's embedder."""
    embedder, cache = matcher_embedder(matcher_name), embedding_cache(store)
    return lambda texts: cache.encode(embedder, list(texts))


def similarity_fn(matcher_name: str, store: ArtifactStore) -> SimilarityFn:
    """Cosine similarity matrix between two lists of texts, with the matcher's embedder."""
    spec = loader.load_matcher(matcher_name)
    if spec.method == "lexical":
        from bioreview_assets.ml.embedders import LexicalSimilarity

        return LexicalSimilarity(spec).similarity
    encode = cached_encoder(matcher_name, store)

    def similarity(left: list[str], right: list[str]) -> np.ndarray:
        if not left or not right:
            return np.zeros((len(left), len(right)), dtype=np.float32)
        return encode(left) @ encode(right).T

    return similarity


def score_with_matcher(embedders, matcher_name: str, refs, predictions, bootstrap_n: int, clusters=None):
    """Score with one configured matcher (embedding matchers are loaded, probed and cached; lexical only if named).

    `embedders` gives `encoder(matcher_name) -> (encode, identity)` (the EmbedderResource).
    """
    from bioreview_assets.core.scoring import score_split

    spec = loader.load_matcher(matcher_name)
    if spec.method == "lexical":
        return score_split(refs, predictions, None, spec, bootstrap_n, clusters=clusters)
    encode, identity = embedders.encoder(matcher_name)
    judge = judge_for(spec) if spec.method == "llm_judge" else None
    return score_split(refs, predictions, encode, spec, bootstrap_n, embedder_identity=identity, clusters=clusters,
                       judge=judge)


def judge_for(spec):
    """The cached LLM judge of an llm_judge matcher (answers cached under <storage>/judge_cache/)."""
    from bioreview_assets.ml.judge import CachedJudge

    return CachedJudge(spec.judge, ArtifactStore())
