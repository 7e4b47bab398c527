"""Ensembles of several models' concerns by cross-model one-to-one matching (fixes W3).

The reference merged with union-find over every pair above a threshold, same-model pairs included,
so similarity chained a~b~c~... into one component and needed a magic 0.98 threshold. Here:

* Members are processed in priority order (the insertion order of the mapping). The first member's
  concerns each open a cluster; a member's own concerns are never merged with each other (dedup
  them beforehand with postprocess if wanted).
* Each next member's concerns are assigned to the existing clusters ONE-TO-ONE with
  scipy.optimize.linear_sum_assignment. The similarity of a concern to a cluster is COMPLETE
  linkage: its minimum similarity to every concern already in the cluster, so a~b and b~c never
  pull c into a's cluster unless c~a too. Pairs below the threshold are never assigned; concerns
  left unassigned open new clusters. A cluster holds at most one concern per member.
* Representative policy: a cluster is represented by the concern (text, category, severity) of its
  highest-priority member, i.e. the member that opened the cluster. No "longest text" heuristic:
  the output stays attributable to one model's actual generation.
* strategy "union" keeps every cluster; "vote" keeps clusters with >= min_votes members.
* Output order: number of votes descending, ties by cluster creation order.

No cap is applied here: the caller applies the same cap/selection policy as for single models
(postprocess.select), so that "ensemble beats single model" is not "ensemble emits more concerns".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from bioreview_assets.core.matching import hungarian_match
from bioreview_assets.core.generated_concern import GeneratedConcern
from bioreview_assets.core.postprocess import SimilarityFn

STRATEGIES: tuple[str, ...] = ("union", "vote")


@dataclass(frozen=True)
class EnsembleConcern:
    """One merged concern: the representative's labels plus the members that raised it."""

    text: str
    category: str | None
    severity: str | None
    members: tuple[str, ...]
    representative_of: str

    def __post_init__(self) -> None:
        if self.representative_of not in self.members:
            raise ValueError(f"representative {self.representative_of!r} is not among members {self.members}")

    @property
    def votes(self) -> int:
        """Number of members that raised this concern."""
        return len(self.members)


@dataclass
class _Cluster:
    # member name -> that member's concern, in priority order (dicts keep insertion order)
    concerns: dict[str, GeneratedConcern] = field(default_factory=dict)

    def to_ensemble_concern(self) -> EnsembleConcern:
        representative, concern = next(iter(self.concerns.items()))
        return EnsembleConcern(
            text=concern.text,
            category=concern.category,
            severity=concern.severity,
            members=tuple(self.concerns),
            representative_of=representative,
        )


def merge_members(
    member_concerns: Mapping[str, Sequence[GeneratedConcern]],
    similarity_fn: SimilarityFn,
    threshold: float,
    strategy: str,
    min_votes: int = 2,
) -> list[EnsembleConcern]:
    """Merge several members' concerns for one article by one-to-one complete-linkage matching."""
    _check_arguments(member_concerns, strategy, min_votes)
    clusters: list[_Cluster] = []
    for member, concerns in member_concerns.items():
        assignment = _assign(concerns, clusters, similarity_fn, threshold)
        for i, concern in enumerate(concerns):
            if i in assignment:
                clusters[assignment[i]].concerns[member] = concern
            else:
                clusters.append(_Cluster({member: concern}))
    merged = [cluster.to_ensemble_concern() for cluster in clusters]
    if strategy == "vote":
        merged = [concern for concern in merged if concern.votes >= min_votes]
    # sorted() is stable, so equal vote counts keep cluster creation order.
    return sorted(merged, key=lambda concern: -concern.votes)


def _assign(
    concerns: Sequence[GeneratedConcern],
    clusters: list[_Cluster],
    similarity_fn: SimilarityFn,
    threshold: float,
) -> dict[int, int]:
    """Map concern index -> cluster index for the one-to-one pairs at or above threshold."""
    if not concerns or not clusters:
        return {}
    linkage = _complete_linkage(concerns, clusters, similarity_fn)
    # The scorer's own assignment rule (most above-threshold pairs, then most similarity), not a second copy of it.
    return {i: j for i, j, _ in hungarian_match(linkage, threshold)}


def _complete_linkage(
    concerns: Sequence[GeneratedConcern],
    clusters: list[_Cluster],
    similarity_fn: SimilarityFn,
) -> np.ndarray:
    """(concerns x clusters) matrix of each concern's MINIMUM similarity to a cluster's concerns."""
    cluster_texts = [[c.text for c in cluster.concerns.values()] for cluster in clusters]
    flat_texts = [text for texts in cluster_texts for text in texts]
    # One similarity call per member keeps embedding work batched.
    similarity = np.asarray(similarity_fn([c.text for c in concerns], flat_texts), dtype=float)
    if similarity.shape != (len(concerns), len(flat_texts)):
        raise ValueError(
            f"similarity_fn returned shape {similarity.shape}, expected ({len(concerns)}, {len(flat_texts)})"
        )
    linkage = np.empty((len(concerns), len(clusters)))
    start = 0
    for j, texts in enumerate(cluster_texts):
        linkage[:, j] = similarity[:, start : start + len(texts)].min(axis=1)
        start += len(texts)
    return linkage


def _check_arguments(member_concerns: Mapping[str, Sequence[GeneratedConcern]], strategy: str, min_votes: int) -> None:
    if not member_concerns:
        raise ValueError("an ensemble needs at least one member")
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy {strategy!r} is not one of {STRATEGIES}")
    if strategy == "vote" and not 1 <= min_votes <= len(member_concerns):
        raise ValueError(f"min_votes={min_votes} is impossible with {len(member_concerns)} members")
