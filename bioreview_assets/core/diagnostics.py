"""Controls that say whether a matcher discriminates content or just rewards concern counts.

Why: docs/reference.md, harness W1."""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from bioreview_assets.core.matching import Algorithm, matched_counts
from bioreview_assets.core.metrics import ArticleScore, micro_prf

# Rounded so that 0.35 is 0.35: np.arange(0.30, 0.951, 0.05) yields 0.35000000000000003, which the
# inclusive `>=` test would treat differently from a user's 0.35 at an exact borderline.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(0.30 + 0.05 * k, 2) for k in range(14))
# Cosines lie in [-1, 1], Jaccard in [0, 1]; one fixed grid keeps histograms of two matchers comparable.
DEFAULT_BINS: tuple[float, ...] = tuple(round(-1.0 + 0.025 * k, 3) for k in range(81))

SimWithMask = tuple[np.ndarray, np.ndarray | None]


@dataclass(frozen=True)
class NullPairing:
    """Which article's references each article's generated concerns are scored against in the null."""

    partners: tuple[int, ...]
    cross_source: tuple[str, ...]  # articles alone in their source, paired with another source's article


@dataclass(frozen=True)
class NullResult:
    """Micro scores of generated concerns matched against another article's references."""

    pairing: NullPairing
    n_gt: int
    n_tool: int
    n_matched: int
    recall: float
    precision: float
    f1: float
    best_sims: np.ndarray  # per generated concern: best similarity to the partner's references

    def summary(self) -> dict:
        """JSON-ready numbers for a metrics record."""
        return {
            "method": "shuffled references: generated concerns vs another article of the same source",
            "n_gt": self.n_gt, "n_tool": self.n_tool, "n_matched": self.n_matched,
            "recall_micro": self.recall, "precision_micro": self.precision, "f1_micro": self.f1,
            "cross_source_articles": list(self.pairing.cross_source),
        }


def null_pairing(article_ids: Sequence[str], sources: Sequence[str], seed: int = 42) -> NullPairing:
    """Deterministic derangement within each source; an article alone in its source gets another source's article."""
    if len(article_ids) != len(sources):
        raise ValueError("article_ids and sources differ in length")
    if len(article_ids) < 2:
        raise ValueError("a shuffled null needs at least two articles")
    rng = random.Random(seed)
    groups: dict[str, list[int]] = {}
    for idx, source in enumerate(sources):
        groups.setdefault(source, []).append(idx)
    partners = [-1] * len(article_ids)
    cross: list[str] = []
    for source in sorted(groups):
        members = groups[source]
        if len(members) == 1:
            others = [i for i in range(len(article_ids)) if sources[i] != source]
            partners[members[0]] = rng.choice(others)
            cross.append(article_ids[members[0]])
            continue
        order = list(members)
        rng.shuffle(order)
        # A cyclic shift of a shuffled list is a derangement: nobody keeps their own references.
        for k, idx in enumerate(order):
            partners[idx] = order[(k + 1) % len(order)]
    return NullPairing(partners=tuple(partners), cross_source=tuple(cross))


def grouped_null_pairing(
    unit_ids: Sequence[str], sources: Sequence[str], groups: Sequence[str], seed: int = 42
) -> NullPairing:
    """A null pairing of units that belong to groups (the reviewers of one article): never inside one group.

    The groups are deranged as articles are (`null_pairing`, same seed), then the k-th unit of a group is paired
    with unit k (modulo its size) of the partner group, so no unit is scored against its own article's concerns.
    """
    if not len(unit_ids) == len(sources) == len(groups):
        raise ValueError("unit_ids, sources and groups differ in length")
    members: dict[str, list[int]] = {}
    group_source: dict[str, str] = {}
    for idx, (group, source) in enumerate(zip(groups, sources)):
        members.setdefault(group, []).append(idx)
        if group_source.setdefault(group, source) != source:
            raise ValueError(f"group {group!r} spans two sources ({group_source[group]!r}, {source!r})")
    order = list(members)
    if len(order) < 2:
        raise ValueError("a shuffled null of grouped units needs at least two groups")
    by_group = null_pairing(order, [group_source[g] for g in order], seed)
    partners = [-1] * len(unit_ids)
    for g_index, group in enumerate(order):
        partner_units = members[order[by_group.partners[g_index]]]
        for k, idx in enumerate(members[group]):
            partners[idx] = partner_units[k % len(partner_units)]
    return NullPairing(partners=tuple(partners), cross_source=by_group.cross_source)


def score_null(
    pairing: NullPairing, pair_sims: Sequence[SimWithMask], threshold: float, algorithm: Algorithm
) -> NullResult:
    """Micro R/P/F1 of the null from each article's (sim vs partner references, mask)."""
    for item in pair_sims:
        if not (isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], np.ndarray)):
            raise TypeError("pair_sims items must be (similarity matrix, mask or None) tuples")
    sims = [sim for sim, _ in pair_sims]
    n_tool = sum(sim.shape[0] for sim in sims)
    n_gt = sum(sim.shape[1] for sim in sims)
    [n_matched] = matched_counts(sims, [threshold], algorithm, [mask for _, mask in pair_sims])
    best = [row_best(sim) for sim in sims]
    prf = micro_prf(n_matched, n_gt, n_tool)
    return NullResult(
        pairing=pairing, n_gt=n_gt, n_tool=n_tool, n_matched=n_matched,
        recall=prf["recall"], precision=prf["precision"], f1=prf["f1"], best_sims=_concat(best),
    )


def null_sims(pairing: NullPairing, pair_sim: Callable[[int, int], SimWithMask]) -> list[SimWithMask]:
    """Similarity matrices of every article vs its null partner; store them to re-score the null at any threshold."""
    return [pair_sim(i, partner) for i, partner in enumerate(pairing.partners)]


def row_best(sim: np.ndarray) -> np.ndarray:
    """Best similarity of each generated concern (rows); empty when there are no references."""
    if sim.shape[0] == 0 or sim.shape[1] == 0:
        return np.zeros(0, dtype=np.float64)
    return np.asarray(sim, dtype=np.float64).max(axis=1)


def _concat(parts: Sequence[np.ndarray]) -> np.ndarray:
    return np.concatenate(parts) if parts else np.zeros(0, dtype=np.float64)


def count_oracle(article_scores: Sequence[ArticleScore]) -> dict[str, float]:
    """Micro scores if every article matched exactly min(n_tool, n_gt) pairs: what pure count calibration earns."""
    n_gt = sum(s.n_gt for s in article_scores)
    n_tool = sum(s.n_tool for s in article_scores)
    n_matched = sum(min(s.n_gt, s.n_tool) for s in article_scores)
    return {"n_matched": n_matched, **micro_prf(n_matched, n_gt, n_tool)}


def threshold_curve(
    sims: Sequence[np.ndarray],
    thresholds: Sequence[float] = DEFAULT_THRESHOLDS,
    algorithm: Algorithm = "hungarian",
    masks: Sequence[np.ndarray | None] | None = None,
) -> list[tuple[float, float, float, float]]:
    """(threshold, precision, recall, F1) micro over articles, re-matched from stored per-article matrices."""
    n_gt = sum(sim.shape[1] for sim in sims)
    n_tool = sum(sim.shape[0] for sim in sims)
    curve = []
    for t, n_matched in zip(thresholds, matched_counts(sims, thresholds, algorithm, masks)):
        prf = micro_prf(n_matched, n_gt, n_tool)
        curve.append((float(t), prf["precision"], prf["recall"], prf["f1"]))
    return curve


def similarity_histograms(
    matched_sims: np.ndarray,
    null_best_sims: np.ndarray | None,
    own_best_sims: np.ndarray | None = None,
    bins: Sequence[float] = DEFAULT_BINS,
) -> dict[str, list]:
    """Histogram counts of matched-pair, null best and (optionally) own-article best similarities on one grid."""

    def counts(values: np.ndarray | None) -> list[int] | None:
        if values is None:
            return None
        # float32 dot products of unit vectors can land a hair outside [-1, 1]; clip so they stay counted.
        clipped = np.clip(np.asarray(values, dtype=np.float64), bins[0], bins[-1])
        return np.histogram(clipped, bins=np.asarray(bins))[0].astype(int).tolist()

    return {
        "bin_edges": list(bins),
        "matched": counts(matched_sims),
        "own_best": counts(own_best_sims),
        "null_best": counts(null_best_sims),
    }
