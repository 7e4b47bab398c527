"""Similarity and one-to-one concern matching, rule for rule as the bioreview-bench harness.

The rules: docs/reference.md, harness §3.4-§3.5."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Literal

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import maximum_bipartite_matching

Algorithm = Literal["hungarian", "greedy"]
Pair = tuple[int, int, float]  # (generated index, reference index, similarity)

# Upstream lexical mode: ASCII alphanumeric tokens of length >= 3 on lowercased text, set semantics.
LEXICAL_TOKEN_RE = re.compile(r"\b[a-z0-9]{3,}\b")
# Upstream `_JACCARD_THRESHOLD_SCALE`: the configured (cosine-scale) threshold is multiplied by this.
JACCARD_THRESHOLD_SCALE = 0.3
# Upstream cost for a below-threshold cell: large enough that any above-threshold pair beats it,
# so the solver maximises the number of kept pairs first and their total similarity second.
_FORBIDDEN_COST = 1e6


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine matrix (len(a) x len(b)) of already L2-normalised float32 rows, computed in float32 like upstream."""
    a32 = np.asarray(a, dtype=np.float32)
    b32 = np.asarray(b, dtype=np.float32)
    if a32.ndim != 2 or b32.ndim != 2 or a32.shape[1] != b32.shape[1]:
        raise ValueError(f"cosine needs two 2-D arrays of equal width, got {a32.shape} and {b32.shape}")
    return a32 @ b32.T


def lexical_tokens(text: str) -> frozenset[str]:
    """Upstream Jaccard token set of one text."""
    return frozenset(LEXICAL_TOKEN_RE.findall(text.lower()))


def jaccard_matrix(generated: Sequence[str], reference: Sequence[str]) -> np.ndarray:
    """Jaccard similarity matrix (float64, len(generated) x len(reference)); 0 where either token set is empty."""
    gen_sets = [lexical_tokens(t) for t in generated]
    ref_sets = [lexical_tokens(t) for t in reference]
    out = np.zeros((len(gen_sets), len(ref_sets)), dtype=np.float64)
    for i, a in enumerate(gen_sets):
        for j, b in enumerate(ref_sets):
            if a and b:
                out[i, j] = len(a & b) / len(a | b)
    return out


def category_mask(generated: Sequence[str | None], reference: Sequence[str]) -> np.ndarray:
    """Boolean matrix: True where a generated concern's category equals the reference's (None never agrees)."""
    return np.array(
        [[g is not None and g == r for r in reference] for g in generated], dtype=bool
    ).reshape(len(generated), len(reference))


def _as_harness_matrix(sim: np.ndarray, allowed: np.ndarray | None) -> np.ndarray:
    # Upstream turns the float32 matrix into Python floats before building the cost; float64 holds every
    # float32 exactly, and computing 1 - S in float64 (not float32) keeps near-tie assignments identical.
    s = np.array(sim, dtype=np.float64, copy=True)
    if s.ndim != 2:
        raise ValueError(f"similarity matrix must be 2-D, got shape {s.shape}")
    if np.isnan(s).any():
        raise ValueError("similarity matrix contains NaN")
    if allowed is not None:
        if allowed.shape != s.shape:
            raise ValueError(f"mask shape {allowed.shape} != similarity shape {s.shape}")
        # -inf is below every threshold, so a disallowed cell gets the forbidden cost and is never kept.
        s[~allowed] = -np.inf
    return s


def hungarian_match(sim: np.ndarray, threshold: float, allowed: np.ndarray | None = None) -> list[Pair]:
    """Harness assignment: cost 1-S (1e6 below threshold), rectangular linear_sum_assignment, keep S >= threshold."""
    s = _as_harness_matrix(sim, allowed)
    if s.shape[0] == 0 or s.shape[1] == 0:
        return []
    cost = 1.0 - s
    cost[s < threshold] = _FORBIDDEN_COST
    rows, cols = linear_sum_assignment(cost)
    return [(int(i), int(j), float(s[i, j])) for i, j in zip(rows, cols) if s[i, j] >= threshold]


def greedy_match(sim: np.ndarray, threshold: float, allowed: np.ndarray | None = None) -> list[Pair]:
    """Ablation: take above-threshold pairs by descending similarity while row and column are free."""
    s = _as_harness_matrix(sim, allowed)
    candidates = [(float(s[i, j]), i, j) for i, j in zip(*np.nonzero(s >= threshold))]
    # Stable sort on score only: ties keep row-major order, as upstream's sorted() over enumerated pairs.
    candidates.sort(key=lambda c: -c[0])
    used_rows: set[int] = set()
    used_cols: set[int] = set()
    pairs: list[Pair] = []
    for score, i, j in candidates:
        if i not in used_rows and j not in used_cols:
            used_rows.add(int(i))
            used_cols.add(int(j))
            pairs.append((int(i), int(j), score))
    return sorted(pairs)


def matched_counts(
    sims: Sequence[np.ndarray],
    thresholds: Sequence[float],
    algorithm: Algorithm,
    masks: Sequence[np.ndarray | None] | None = None,
) -> list[int]:
    """Summed len(match(sim, t, ...)) over many matrices, for each threshold t, without building any pair list."""
    masks = [None] * len(sims) if masks is None else masks
    if len(masks) != len(sims):
        raise ValueError(f"{len(masks)} masks for {len(sims)} similarity matrices")
    if algorithm != "hungarian":
        return [sum(len(match(sim, t, algorithm, mask)) for sim, mask in zip(sims, masks)) for t in thresholds]
    graph = _BlockDiagonalGraph([_as_harness_matrix(sim, mask) for sim, mask in zip(sims, masks)])
    return [graph.maximum_matching_size(float(t)) for t in thresholds]


class _BlockDiagonalGraph:
    """All matrices as one block-diagonal bipartite graph: generated concerns x references, edge weight = similarity.

    The harness's assignment (cost 1 - S, 1e6 below the threshold) first minimises the number of 1e6 cells,
    so the number of pairs it keeps is the maximum matching size of the graph of pairs at or above the
    threshold. Blocks share no vertex, so one Hopcroft-Karp run over all of them counts every article at once
    instead of one linear_sum_assignment call per article and threshold.
    """

    def __init__(self, matrices: Sequence[np.ndarray]) -> None:
        rows, cols, values = [], [], []
        row_offset = col_offset = 0
        for s in matrices:
            n, m = s.shape
            r, c = np.indices((n, m))
            rows.append(r.ravel() + row_offset)
            cols.append(c.ravel() + col_offset)
            values.append(s.ravel())
            row_offset, col_offset = row_offset + n, col_offset + m
        self._rows = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self._cols = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        self._values = np.concatenate(values) if values else np.zeros(0, np.float64)
        self._shape = (row_offset, col_offset)

    def maximum_matching_size(self, threshold: float) -> int:
        """Pairs the harness keeps at `threshold`, summed over the blocks."""
        keep = self._values >= threshold
        if not keep.any():
            return 0
        edges = csr_matrix((np.ones(int(keep.sum()), dtype=np.int8), (self._rows[keep], self._cols[keep])),
                           shape=self._shape)
        return int((maximum_bipartite_matching(edges, perm_type="column") >= 0).sum())


def match(sim: np.ndarray, threshold: float, algorithm: Algorithm, allowed: np.ndarray | None = None) -> list[Pair]:
    """Dispatch to the named algorithm; an unknown name is an error (upstream silently fell back to greedy)."""
    if algorithm == "hungarian":
        return hungarian_match(sim, threshold, allowed)
    if algorithm == "greedy":
        return greedy_match(sim, threshold, allowed)
    raise ValueError(f"unknown matching algorithm {algorithm!r}")
