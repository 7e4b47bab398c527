"""The paper-agnostic checklist baseline: the K concerns reviewers raise most often, the same list for every article.

The training split's reference concerns (the baselines' GT filter: no figure concerns, exact duplicates removed) are
embedded with the matcher's embedder and clustered greedily at the matcher's own threshold ("the same concern" by the
rule the scorer applies): texts are visited in first-seen order and join the first cluster whose leader they reach,
or found a new one. Clusters are ranked by size (ties: first seen), and each of the K largest is represented by the
member nearest its centroid (ties: first seen). K is the training split's median concern count per article, capped
like every system. Nothing reads the target article: a high score here is earned by generic concerns.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bioreview_assets.core.gt_filter import GTPolicy, filter_article
from bioreview_assets.core.generated_concern import GeneratedConcern
from bioreview_assets.core.schema import Article

Encode = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Checklist:
    """The list every article gets, and how it was built (for the concerns' metadata)."""

    concerns: tuple[GeneratedConcern, ...]
    k: int
    median_per_article: float
    n_training_concerns: int
    n_clusters: int
    cluster_sizes: tuple[int, ...]  # of the K chosen clusters, in order
    threshold: float


def checklist_k(train: Sequence[Article], policy: GTPolicy, cap: int | None) -> tuple[int, float]:
    """(K, median): the median number of filtered concerns per training article, rounded down, at most `cap`."""
    counts = [len(filter_article(a, policy).kept) for a in train]
    if not counts:
        raise ValueError("the checklist baseline needs training articles")
    median = float(statistics.median(counts))
    k = int(median)
    return (min(k, cap) if cap is not None else k), median


def leader_clusters(emb: np.ndarray, threshold: float) -> list[list[int]]:
    """Greedy clustering of unit rows in order: a row joins the first cluster whose leader it reaches (>= threshold)."""
    clusters: list[list[int]] = []
    leaders: list[int] = []
    for i in range(emb.shape[0]):
        if leaders:
            sims = emb[leaders] @ emb[i]
            hit = np.flatnonzero(sims >= threshold)
            if hit.size:
                clusters[int(hit[0])].append(i)
                continue
        leaders.append(i)
        clusters.append([i])
    return clusters


def build_checklist(
    train: Sequence[Article], encode: Encode, threshold: float, policy: GTPolicy, cap: int | None
) -> Checklist:
    """The K most often raised training concerns (largest clusters' representatives), deterministic for its inputs."""
    k, median = checklist_k(train, policy, cap)
    texts: list[str] = []  # one entry per concern (duplicates across articles count towards a cluster's size)
    labels: dict[str, tuple[str, str]] = {}
    for article in train:
        for concern in filter_article(article, policy).kept:
            texts.append(concern.text)
            labels.setdefault(concern.text, (concern.category, concern.severity))
    unique = list(dict.fromkeys(texts))
    if not unique:
        raise ValueError("the checklist baseline found no training concern after the GT filter")
    emb = np.asarray(encode(unique), dtype=np.float32)
    if emb.shape[0] != len(unique) or not np.allclose(np.linalg.norm(emb, axis=1), 1.0, atol=1e-3):
        raise ValueError("encode must return one L2-normalised row per text")
    multiplicity = np.zeros(len(unique), dtype=np.int64)
    position = {t: i for i, t in enumerate(unique)}
    for t in texts:
        multiplicity[position[t]] += 1
    clusters = leader_clusters(emb, threshold)
    sizes = [int(multiplicity[c].sum()) for c in clusters]
    # Largest first; a tie keeps the cluster founded first (its leader came earlier in the split).
    ranked = sorted(range(len(clusters)), key=lambda c: (-sizes[c], clusters[c][0]))[:k]
    chosen = []
    for c in ranked:
        members = clusters[c]
        centroid = (emb[members] * multiplicity[members, None]).sum(axis=0)
        # argmax returns the first member on ties: members are in first-seen order.
        chosen.append(unique[members[int(np.argmax(emb[members] @ centroid))]])
    return Checklist(
        concerns=tuple(GeneratedConcern.of(t, *labels[t]) for t in chosen), k=k, median_per_article=median,
        n_training_concerns=len(texts), n_clusters=len(clusters), cluster_sizes=tuple(sizes[c] for c in ranked),
        threshold=threshold,
    )
