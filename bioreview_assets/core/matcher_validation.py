"""Is the matcher right? Its "same concern" decision (similarity >= threshold) against pairs a person labelled.

Pure: labelled pairs in (text_a, text_b, label, annotator), similarities computed by the caller with the matcher's
own function, out come precision, recall and F1 of "same concern" at the matcher's threshold with bootstrap CIs over
pairs, the threshold curve and the best threshold; Cohen's kappa where two annotators labelled the same pairs.
"""

from __future__ import annotations

import csv
import io
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from bioreview_assets.core.metrics import f1_score

LABEL_FIELDS = ("text_a", "text_b", "label", "annotator")
_TRUE = {"1", "true", "yes", "same", "y"}
_FALSE = {"0", "false", "no", "different", "n"}


@dataclass(frozen=True)
class LabelledPair:
    """Two concerns and one annotator's answer to "do they raise the same issue?"."""

    text_a: str
    text_b: str
    label: bool
    annotator: str
    kind: str = ""  # provenance, e.g. positive / hard_negative / negative for generated pairs

    @property
    def key(self) -> tuple[str, str]:
        """The pair regardless of order (a labelled a-b is the same question as b-a)."""
        a, b = " ".join(self.text_a.split()), " ".join(self.text_b.split())
        return (a, b) if a <= b else (b, a)


def _label(value, where: str) -> bool:
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"{where}: label {value!r} is neither same (1/true/yes/same) nor different (0/false/no/different)")


def parse_labelled_pairs(text: str, name: str = "pairs") -> list[LabelledPair]:
    """Labelled pairs from JSONL (one object a line) or CSV with a header; every row needs text_a, text_b, label.

    A missing annotator is "unknown"; rows whose label is empty (not yet labelled in an export) are skipped. A row
    without text, or with a label that is not yes/no, is an error naming the file and line.
    """
    stripped = text.lstrip()
    if stripped.startswith("{"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append((n, json.loads(line)))
                except json.JSONDecodeError as err:
                    raise ValueError(f"{name}:{n}: not JSON ({err})") from err
    else:
        reader = csv.DictReader(io.StringIO(text))
        missing = [f for f in ("text_a", "text_b", "label") if f not in (reader.fieldnames or [])]
        if missing:
            raise ValueError(f"{name}: CSV header lacks {missing} (expected {', '.join(LABEL_FIELDS)})")
        rows = [(n, row) for n, row in enumerate(reader, 2)]
    pairs = []
    for n, row in rows:
        where = f"{name}:{n}"
        if str(row.get("label", "")).strip() == "":
            continue
        a, b = str(row.get("text_a") or "").strip(), str(row.get("text_b") or "").strip()
        if not a or not b:
            raise ValueError(f"{where}: text_a and text_b must both be given")
        pairs.append(LabelledPair(a, b, _label(row["label"], where), str(row.get("annotator") or "unknown"),
                                  str(row.get("kind") or "")))
    return pairs


def cohen_kappa(labels_a: Sequence[bool], labels_b: Sequence[bool]) -> float:
    """Cohen's kappa of two annotators over the same items: (observed - chance agreement) / (1 - chance)."""
    if len(labels_a) != len(labels_b) or not labels_a:
        raise ValueError("kappa needs two equally long, non-empty label lists")
    n = len(labels_a)
    observed = sum(x == y for x, y in zip(labels_a, labels_b)) / n
    pa, pb = sum(labels_a) / n, sum(labels_b) / n
    chance = pa * pb + (1 - pa) * (1 - pb)
    if chance == 1.0:
        return 1.0 if observed == 1.0 else 0.0  # both annotators used one label only: agreement is not informative
    return (observed - chance) / (1 - chance)


def agreement(pairs: Sequence[LabelledPair]) -> list[dict]:
    """Cohen's kappa for every two annotators who labelled at least one pair in common."""
    by_annotator: dict[str, dict[tuple[str, str], bool]] = {}
    for p in pairs:
        by_annotator.setdefault(p.annotator, {})[p.key] = p.label
    out = []
    for x, y in combinations(sorted(by_annotator), 2):
        common = sorted(set(by_annotator[x]) & set(by_annotator[y]))
        if common:
            a = [by_annotator[x][k] for k in common]
            b = [by_annotator[y][k] for k in common]
            out.append({"annotators": [x, y], "n_pairs": len(common),
                        "observed_agreement": sum(i == j for i, j in zip(a, b)) / len(common),
                        "kappa": cohen_kappa(a, b)})
    return out


def consensus(pairs: Sequence[LabelledPair]) -> tuple[list[LabelledPair], int]:
    """One pair per question, labelled by majority over annotators; (pairs, number dropped as ties)."""
    votes: dict[tuple[str, str], list[LabelledPair]] = {}
    for p in pairs:
        votes.setdefault(p.key, []).append(p)
    kept, ties = [], 0
    for group in votes.values():
        yes = sum(p.label for p in group)
        if 2 * yes == len(group):
            ties += 1
            continue
        first = group[0]
        kept.append(LabelledPair(first.text_a, first.text_b, 2 * yes > len(group),
                                 "+".join(sorted({p.annotator for p in group})), first.kind))
    return kept, ties


def prf_at(sims: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    """Precision, recall, F1 of "same concern" = similarity >= threshold against the labels."""
    predicted = sims >= threshold
    tp = int((predicted & labels).sum())
    fp = int((predicted & ~labels).sum())
    fn = int((~predicted & labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {"precision": precision, "recall": recall, "f1": f1_score(precision, recall), "tp": tp, "fp": fp, "fn": fn}


def validate_matcher(
    sims: Sequence[float],
    labels: Sequence[bool],
    threshold: float,
    thresholds: Sequence[float],
    n_bootstrap: int = 1000,
    alpha: float = 0.05,
    seed: int = 42,
) -> dict:
    """P/R/F1 at `threshold` with bootstrap CIs over pairs, the curve over `thresholds` and its best threshold.

    `sims` and `threshold(s)` are on the same scale (the matcher's effective similarity). The best threshold is the
    first of the grid with the highest F1.
    """
    s = np.asarray(sims, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    if s.shape != y.shape or s.ndim != 1 or not s.size:
        raise ValueError("validate_matcher needs one similarity per labelled pair (at least one pair)")
    if y.all() or not y.any():
        raise ValueError("labelled pairs need both same-concern and different-concern examples")
    at = prf_at(s, y, threshold)
    draws = np.random.default_rng(seed).integers(0, s.size, size=(n_bootstrap, s.size))
    stats = {"precision": [], "recall": [], "f1": []}
    for idx in draws:
        r = prf_at(s[idx], y[idx], threshold)
        for k in stats:
            stats[k].append(r[k])
    lo, hi = int(alpha / 2 * n_bootstrap), int((1 - alpha / 2) * n_bootstrap) - 1
    ci = {k: (sorted(v)[lo], sorted(v)[max(hi, lo)]) for k, v in stats.items()} if n_bootstrap else {}
    curve = [{"threshold": float(t), **{k: v for k, v in prf_at(s, y, t).items() if k in ("precision", "recall", "f1")}}
             for t in thresholds]
    best = max(curve, key=lambda row: row["f1"]) if curve else None  # max keeps the first on ties
    return {
        "n_pairs": int(s.size), "n_same": int(y.sum()), "n_different": int((~y).sum()),
        "threshold": threshold, **at, "ci": ci, "n_bootstrap": n_bootstrap, "seed": seed,
        "curve": curve, "best_threshold": best["threshold"] if best else None, "best_f1": best["f1"] if best else None,
        "same_similarity_mean": float(s[y].mean()), "different_similarity_mean": float(s[~y].mean()),
    }


def pair_similarities(spec, encode, pairs: Sequence[LabelledPair], judge=None) -> np.ndarray:
    """The matcher's similarity of each pair: cosine of its embeddings (one encode call), Jaccard when lexical, or
    the judge's score (0.5 + cosine / 2 for a "same" verdict on a pre-filtered pair, else 0) for an llm_judge."""
    if spec.method == "lexical":
        from bioreview_assets.core.matching import jaccard_matrix

        return np.array([float(jaccard_matrix([p.text_a], [p.text_b])[0, 0]) for p in pairs], dtype=np.float64)
    if encode is None:
        raise ValueError(f"matcher {spec.name!r} is an embedding matcher: pass `encode`")
    texts = list(dict.fromkeys(t for p in pairs for t in (p.text_a, p.text_b)))
    emb = np.asarray(encode(texts), dtype=np.float64)
    row = {t: i for i, t in enumerate(texts)}
    a = emb[[row[p.text_a] for p in pairs]]
    b = emb[[row[p.text_b] for p in pairs]]
    cos = (a * b).sum(axis=1)
    if spec.method != "llm_judge":
        return cos
    if judge is None:
        raise ValueError(f"matcher {spec.name!r} is an llm_judge matcher: pass `judge`")
    return _judged_pairs(cos, pairs, spec.judge.prefilter_threshold, judge)


def _judged_pairs(cos: np.ndarray, pairs: Sequence[LabelledPair], prefilter: float, judge) -> np.ndarray:
    """One judge call for every pre-filtered pair; the same scores as core.judge.judged_matrix gives a match."""
    asked = [i for i in range(len(pairs)) if cos[i] >= prefilter]
    verdicts = judge([(pairs[i].text_a, pairs[i].text_b) for i in asked]) if asked else []
    out = np.zeros(len(pairs), dtype=np.float64)
    for i, same in zip(asked, verdicts):
        out[i] = 0.5 + cos[i] / 2 if same else 0.0
    return out


def validate_labelled_pairs(spec, encode, pairs: Sequence[LabelledPair], thresholds: Sequence[float],
                            n_bootstrap: int = 1000, seed: int = 42, judge=None) -> dict:
    """Kappa between annotators, then the matcher against the consensus labels (thresholds as configured)."""
    kept, ties = consensus(pairs)
    sims = pair_similarities(spec, encode, kept, judge)
    result = validate_matcher(sims, [p.label for p in kept], spec.effective_threshold,
                              [spec.effective(t) for t in thresholds], n_bootstrap=n_bootstrap, seed=seed)
    for row, configured in zip(result["curve"], thresholds):
        row["configured_threshold"] = configured
    best = max(result["curve"], key=lambda row: row["f1"]) if result["curve"] else None
    by_kind: dict[str, dict] = {}
    for kind in sorted({p.kind for p in kept if p.kind}):
        idx = np.array([p.kind == kind for p in kept])
        labels = np.array([p.label for p in kept])[idx]
        predicted = sims[idx] >= spec.effective_threshold
        by_kind[kind] = {"n_pairs": int(idx.sum()), "share_called_same": float(predicted.mean()),
                         "accuracy": float((predicted == labels).mean())}
    return {**result, "configured_threshold": spec.threshold,
            "best_configured_threshold": best["configured_threshold"] if best else None,
            "n_labels": len(pairs), "n_ties_dropped": ties, "annotators": sorted({p.annotator for p in pairs}),
            "agreement": agreement(pairs), "by_kind": by_kind}


def similarity_strata(threshold: float, width: float = 0.1, n_each_side: int = 3) -> list[tuple[float, float]]:
    """Bins of similarity around the threshold: n_each_side bins of `width` below it and above it, the outer ones
    open-ended, so pairs near the decision are sampled as often as clear ones."""
    below = [threshold - width * k for k in range(n_each_side, 0, -1)]
    above = [threshold + width * k for k in range(1, n_each_side)]
    edges = [-np.inf, *below[1:], threshold, *above, np.inf]
    return list(zip(edges[:-1], edges[1:]))


def stratified_pairs(candidates: Sequence[dict], threshold: float, n: int, seed: int = 42,
                     width: float = 0.1, n_each_side: int = 3) -> list[dict]:
    """Up to n distinct pairs (dicts with text_a, text_b, similarity), the same number from each similarity bin
    around the threshold where a bin has enough (its shortfall goes to the others), deterministic for a seed."""
    unique: dict[tuple[str, str], dict] = {}
    for row in candidates:
        key = LabelledPair(row["text_a"], row["text_b"], False, "").key
        if key[0] != key[1]:
            unique.setdefault(key, row)
    ordered = [unique[k] for k in sorted(unique)]
    strata = similarity_strata(threshold, width, n_each_side)
    pools = [[r for r in ordered if lo <= r["similarity"] < hi] for lo, hi in strata]
    rng = random.Random(seed)
    for pool in pools:
        rng.shuffle(pool)
    chosen: list[dict] = []
    open_pools = [p for p in pools if p]
    while len(chosen) < n and open_pools:
        share = max(1, (n - len(chosen)) // len(open_pools))
        for pool in open_pools:
            take = pool[:min(share, n - len(chosen))]
            del pool[:len(take)]
            chosen += take
        open_pools = [p for p in open_pools if p]
    rng.shuffle(chosen)  # annotators should not see the strata in order
    return chosen
