"""Similarity functions for post-processing and ensembles, from a matcher spec (cached embeddings).

Every function takes the MatcherSpec itself (the caller loaded it once): nothing here looks a matcher up by name."""

from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from bioreview_assets.core.matcher_spec import MatcherSpec
from bioreview_assets.store.artifacts import ArtifactStore

SimilarityFn = Callable[[list[str], list[str]], np.ndarray]


@functools.lru_cache(maxsize=4)  # MatcherSpec is frozen, so hashable: one loaded embedder per spec and process
def matcher_embedder(spec: MatcherSpec):
    """The loaded, sanity-probed embedder of a matcher (fails closed: EmbedderUnavailable)."""
    from bioreview_assets.ml.embedders import load_embedder, sanity_probe

    if spec.embedder is None:
        raise ValueError(f"matcher {spec.name!r} has no embedder (method {spec.method!r})")
    embedder = load_embedder(spec.embedder)
    sanity_probe(embedder, max_unrelated=spec.embedder.probe_max_unrelated)
    return embedder


def embedding_cache(store: ArtifactStore):
    """The embedding cache under the storage root (shared by scoring, dedup and ensembles)."""
    from bioreview_assets.store.embedding_cache import EmbeddingCache

    return EmbeddingCache(store.url("embedding_cache"))


def cached_encoder(spec: MatcherSpec, store: ArtifactStore) -> Callable[[list[str]], np.ndarray]:
    """encode(texts) through the store's embedding cache for the matcher's embedder."""
    embedder, cache = matcher_embedder(spec), embedding_cache(store)
    return lambda texts: cache.encode(embedder, list(texts))


def similarity_fn(spec: MatcherSpec, store: ArtifactStore) -> SimilarityFn:
    """Cosine similarity matrix between two lists of texts, with the matcher's embedder."""
    if spec.method == "lexical":
        from bioreview_assets.ml.embedders import LexicalSimilarity

        return LexicalSimilarity(spec).similarity
    encode = cached_encoder(spec, store)

    def similarity(left: list[str], right: list[str]) -> np.ndarray:
        if not left or not right:
            return np.zeros((len(left), len(right)), dtype=np.float32)
        return encode(left) @ encode(right).T

    return similarity


def score_with_matcher(embedders, spec: MatcherSpec, refs, predictions, bootstrap_n: int, clusters=None):
    """Score with one matcher (embedding matchers are loaded, probed and cached; lexical only if named).

    `embedders` gives `encoder(spec) -> (encode, identity)` (the EmbedderResource).
    """
    from bioreview_assets.core.scoring import score_split

    if spec.method == "lexical":
        return score_split(refs, predictions, None, spec, bootstrap_n, clusters=clusters)
    encode, identity = embedders.encoder(spec)
    judge = judge_for(spec) if spec.method == "llm_judge" else None
    return score_split(refs, predictions, encode, spec, bootstrap_n, embedder_identity=identity, clusters=clusters,
                       judge=judge)


def judge_for(spec):
    """The cached LLM judge of an llm_judge matcher (answers cached under <storage>/judge_cache/)."""
    from bioreview_assets.services.judge import CachedJudge

    return CachedJudge(spec.judge, ArtifactStore())
