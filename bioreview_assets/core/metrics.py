"""Per-article scores, dataset aggregation and bootstrap CIs, identical to the harness.

The rules: docs/reference.md, harness §3.6-§3.8."""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from bioreview_assets.core.matching import Algorithm, Pair, match
from bioreview_assets.core.schema import SEVERITIES, ScorableConcern

# Upstream counts a concern without a category under this name.
_MISSING_CATEGORY = "other"


def py312_sum(values: Iterable[float]) -> float:
    """Float sum with CPython >= 3.12 `sum()` semantics (Neumaier compensation), so 3.11 reproduces upstream bits."""
    total = 0.0
    compensation = 0.0
    for x in values:
        x = float(x)
        t = total + x
        if abs(total) >= abs(x):
            compensation += (total - t) + x
        else:
            compensation += (x - t) + total
        total = t
    # CPython adds the compensation only when it is non-zero and finite (keeps -0.0 and inf/overflow intact).
    if compensation and math.isfinite(compensation):
        total += compensation
    return total


def f1_score(precision: float, recall: float) -> float:
    """Harmonic mean of precision and recall; 0 when both are 0."""
    return 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0


def _ratio(numerator: float, denominator: float) -> float:
    return numerator / denominator if denominator else 0.0


@dataclass(frozen=True)
class ArticleScore:
    """Matching outcome of one article (counts, matched pairs, category and severity breakdowns)."""

    article_id: str
    source: str
    n_gt: int
    n_tool: int
    n_matched: int
    soft_credit: float
    pairs: tuple[Pair, ...]
    # category -> (n_gt, n_tool, n_matched), reference-side attribution; empty when n_tool == 0 or n_gt == 0.
    per_category: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    # severity -> (n_gt, n_matched) for every severity in the vocabulary.
    per_severity: dict[str, tuple[int, int]] = field(default_factory=dict)

    @property
    def recall(self) -> float:
        """Matched / reference concerns (0 without references)."""
        return _ratio(self.n_matched, self.n_gt)

    @property
    def precision(self) -> float:
        """Matched / generated concerns (0 without generated concerns)."""
        return _ratio(self.n_matched, self.n_tool)

    @property
    def f1(self) -> float:
        """Per-article F1."""
        return f1_score(self.precision, self.recall)

    @property
    def soft_recall(self) -> float:
        """Summed matched similarity / reference concerns."""
        return _ratio(self.soft_credit, self.n_gt)

    @property
    def soft_precision(self) -> float:
        """Summed matched similarity / generated concerns."""
        return _ratio(self.soft_credit, self.n_tool)


def _category(concern: ScorableConcern) -> str:
    return concern.category or _MISSING_CATEGORY


def _category_counts(
    sim: np.ndarray, gt: Sequence[ScorableConcern], pairs: Sequence[Pair]
) -> dict[str, tuple[int, int, int]]:
    n_tool, n_gt = sim.shape
    if n_tool == 0 or n_gt == 0:
        return {}
    counts: dict[str, list[int]] = {}
    categories = [_category(concern) for concern in gt]
    for category in categories:
        counts.setdefault(category, [0, 0, 0])[0] += 1
    partner = {i: j for i, j, _ in pairs}
    nearest = np.argmax(sim, axis=1).tolist()
    for i in range(n_tool):
        # Matched: the partner's category. Unmatched: nearest reference by argmax (first index on ties),
        # however low the similarity (harness W6 in docs/reference.md; kept for parity).
        j = partner.get(i, nearest[i])
        cell = counts[categories[j]]
        cell[1] += 1
        if i in partner:
            cell[2] += 1
    return {cat: (c[0], c[1], c[2]) for cat, c in counts.items()}


def _severity_counts(gt: Sequence[ScorableConcern], pairs: Sequence[Pair]) -> dict[str, tuple[int, int]]:
    matched_refs = {j for _, j, _ in pairs}
    counts = {sev: [0, 0] for sev in SEVERITIES}
    for j, concern in enumerate(gt):
        if concern.severity not in counts:
            raise ValueError(f"concern {concern.concern_id}: unknown severity {concern.severity!r}")
        counts[concern.severity][0] += 1
        counts[concern.severity][1] += j in matched_refs
    return {sev: (c[0], c[1]) for sev, c in counts.items()}


def score_article(
    article_id: str,
    source: str,
    sim: np.ndarray,
    gt: Sequence[ScorableConcern],
    threshold: float,
    algorithm: Algorithm,
    allowed: np.ndarray | None = None,
) -> ArticleScore:
    """Score one article from its (n_tool x n_gt) similarity matrix; `allowed` masks pairs (category agreement)."""
    sim = np.asarray(sim)
    if sim.ndim != 2 or sim.shape[1] != len(gt):
        raise ValueError(f"{article_id}: similarity shape {sim.shape} does not fit {len(gt)} reference concerns")
    pairs = match(sim, threshold, algorithm, allowed)
    return ArticleScore(
        article_id=article_id,
        source=source,
        n_gt=len(gt),
        n_tool=sim.shape[0],
        n_matched=len(pairs),
        soft_credit=py312_sum(s for _, _, s in pairs),
        pairs=tuple(pairs),
        per_category=_category_counts(sim, gt, pairs),
        per_severity=_severity_counts(gt, pairs),
    )


def micro_prf(n_matched: int, n_gt: int, n_tool: int) -> dict[str, float | None]:
    """Recall, precision and F1 from summed counts. Precision is 0 without predictions (the harness's rule); recall
    and F1 are undefined (None) without references: there was nothing to find, which is not a score of 0."""
    precision = _ratio(n_matched, n_tool)
    if not n_gt:
        return {"recall": None, "precision": precision, "f1": None}
    recall = _ratio(n_matched, n_gt)
    return {"recall": recall, "precision": precision, "f1": f1_score(precision, recall)}


def _mean(values: Sequence[float | None]) -> float:
    """Mean of the defined values (a category or source without references has no recall); 0 when there are none."""
    defined = [v for v in values if v is not None]
    return py312_sum(defined) / len(defined) if defined else 0.0


def _per_category(scores: Sequence[ArticleScore]) -> dict[str, dict[str, float]]:
    totals: dict[str, list[int]] = {}
    for s in scores:
        for cat, (n_gt, n_tool, n_matched) in s.per_category.items():
            cell = totals.setdefault(cat, [0, 0, 0])
            cell[0] += n_gt
            cell[1] += n_tool
            cell[2] += n_matched
    return {
        cat: {"n_gt": g, "n_tool": t, "n_matched": m, **micro_prf(m, g, t)}
        for cat, (g, t, m) in sorted(totals.items())
    }


def _per_severity(scores: Sequence[ArticleScore]) -> dict[str, dict[str, float]]:
    out = {}
    for sev in SEVERITIES:
        n_gt = sum(s.per_severity.get(sev, (0, 0))[0] for s in scores)
        n_matched = sum(s.per_severity.get(sev, (0, 0))[1] for s in scores)
        out[sev] = {"n_gt": n_gt, "n_matched": n_matched, "recall": _ratio(n_matched, n_gt) if n_gt else None}
    return out


def _per_source(scores: Sequence[ArticleScore]) -> dict[str, dict[str, float]]:
    by_source: dict[str, list[ArticleScore]] = {}
    for s in scores:
        by_source.setdefault(s.source, []).append(s)
    out = {}
    for source, group in sorted(by_source.items()):
        g, t, m = (sum(x.n_gt for x in group), sum(x.n_tool for x in group), sum(x.n_matched for x in group))
        micro = micro_prf(m, g, t)
        out[source] = {
            "n_articles": len(group), "n_gt": g, "n_tool": t, "n_matched": m,
            "recall_micro": micro["recall"], "precision_micro": micro["precision"], "f1_micro": micro["f1"],
        }
    return out


def aggregate(article_scores: Sequence[ArticleScore]) -> dict:
    """Dataset metrics: micro R/P/F1 (harness), soft means, per category/severity/source with labelled macros."""
    scores = list(article_scores)
    n_gt = sum(s.n_gt for s in scores)
    n_tool = sum(s.n_tool for s in scores)
    n_matched = sum(s.n_matched for s in scores)
    micro = micro_prf(n_matched, n_gt, n_tool)
    per_category = _per_category(scores)
    per_severity = _per_severity(scores)
    per_source = _per_source(scores)
    # Upstream soft metrics: unweighted mean over all articles (those without refs/predictions add 0).
    # Without any reference concern the recall side is undefined (None), never 0.
    soft_recall = _mean([s.soft_recall for s in scores]) if n_gt else None
    soft_precision = _mean([s.soft_precision for s in scores])
    cat_rows = list(per_category.values())
    src_rows = list(per_source.values())
    return {
        "n_articles": len(scores),
        "n_gt": n_gt,
        "n_tool": n_tool,
        "n_matched": n_matched,
        "recall_micro": micro["recall"],
        "precision_micro": micro["precision"],
        "f1_micro": micro["f1"],
        "recall_major": per_severity["major"]["recall"],
        "recall_minor": per_severity["minor"]["recall"],
        "soft_recall_article_mean": soft_recall,
        "soft_precision_article_mean": soft_precision,
        "soft_f1": f1_score(soft_precision, soft_recall) if soft_recall is not None and soft_precision is not None
        else None,
        "per_category_micro": per_category,
        # Upstream `f1_macro`: unweighted mean of category micro-F1 over categories present in the references.
        "f1_category_macro": _mean([c["f1"] for c in cat_rows]) if n_gt else None,
        "recall_category_macro": _mean([c["recall"] for c in cat_rows]) if n_gt else None,
        "precision_category_macro": _mean([c["precision"] for c in cat_rows]),
        "per_severity_micro": per_severity,
        "per_source_micro": per_source,
        "f1_source_macro": _mean([s["f1_micro"] for s in src_rows]) if n_gt else None,
        "recall_source_macro": _mean([s["recall_micro"] for s in src_rows]) if n_gt else None,
        "precision_source_macro": _mean([s["precision_micro"] for s in src_rows]),
        # Per-article averages (0 where a ratio is undefined): what upstream README tables likely showed
        # (docs/reference.md: W16).
        "recall_article_macro": _mean([s.recall for s in scores]) if n_gt else None,
        "precision_article_macro": _mean([s.precision for s in scores]),
        "f1_article_macro": _mean([s.f1 for s in scores]) if n_gt else None,
        "n_articles_zero_recall": sum(1 for s in scores if s.n_gt > 0 and s.n_matched == 0),
        "n_articles_perfect_recall": sum(1 for s in scores if s.n_gt > 0 and s.n_matched == s.n_gt),
    }


def fold_by_cluster(article_scores: Sequence[ArticleScore], clusters: Sequence[str]) -> list[ArticleScore]:
    """Sum the counts of scores that belong together (the reviewer units of one article), in first-seen order.

    The folded scores keep counts and soft credit only (no pairs or breakdowns): what a bootstrap over clusters needs.
    Micro metrics of the folded list equal those of the unfolded one.
    """
    scores = list(article_scores)
    if len(scores) != len(clusters):
        raise ValueError(f"{len(scores)} scores but {len(clusters)} cluster labels")
    folded: dict[str, list] = {}
    for score, cluster in zip(scores, clusters):
        cell = folded.setdefault(cluster, [score.source, 0, 0, 0, []])
        if cell[0] != score.source:
            raise ValueError(f"cluster {cluster!r} spans two sources ({cell[0]!r}, {score.source!r})")
        cell[1] += score.n_gt
        cell[2] += score.n_tool
        cell[3] += score.n_matched
        cell[4].append(score.soft_credit)
    return [ArticleScore(article_id=cluster, source=src, n_gt=g, n_tool=t, n_matched=m, soft_credit=py312_sum(soft),
                         pairs=()) for cluster, (src, g, t, m, soft) in folded.items()]


def harness_choice_indices(seed: int, n_items: int, n_draws: int) -> np.ndarray:
    """What `rng = random.Random(seed)` then n_draws x `rng.choice(range(n_items))` returns, computed in bulk.

    choice() draws getrandbits(k) (k = n_items.bit_length(): one 32-bit Mersenne Twister word shifted right by 32-k)
    until the value is < n_items, so the accepted values of the raw word stream, in order, are exactly the draws.
    numpy's MT19937 started from Python's state yields that stream ~20x faster than 600,000 choice() calls.
    """
    if not 0 < n_items <= 1 << 32:
        raise ValueError(f"harness_choice_indices needs 1 <= n_items <= 2**32, got {n_items}")
    state = random.Random(seed).getstate()[1]
    bit_generator = np.random.MT19937()
    bit_generator.state = {"bit_generator": "MT19937",
                           "state": {"key": np.array(state[:624], dtype=np.uint32), "pos": state[624]}}
    bits = n_items.bit_length()
    chunks, have = [], 0
    while have < n_draws:
        words = bit_generator.random_raw(int((n_draws - have) * (1 << bits) / n_items) + 1024)
        values = (words >> np.uint64(32 - bits)).astype(np.int64)
        accepted = values[values < n_items]
        chunks.append(accepted)
        have += accepted.size
    return np.concatenate(chunks)[:n_draws] if chunks else np.zeros(0, dtype=np.int64)


def bootstrap_ci(
    article_scores: Sequence[ArticleScore], n: int = 1000, alpha: float = 0.05, seed: int = 42
) -> dict:
    """Harness bootstrap: random.Random(seed), rng.choice per draw, sorted-list indices; F1 interval is our addition."""
    scores = list(article_scores)
    if not scores:
        raise ValueError("bootstrap_ci needs at least one article")
    if n < 1:
        raise ValueError(f"bootstrap_ci needs n >= 1 resamples, got {n}")
    draws = harness_choice_indices(seed, len(scores), n * len(scores)).reshape(n, len(scores))
    matched = np.array([s.n_matched for s in scores], dtype=np.int64)[draws].sum(axis=1)
    gt = np.array([s.n_gt for s in scores], dtype=np.int64)[draws].sum(axis=1)
    tool = np.array([s.n_tool for s in scores], dtype=np.int64)[draws].sum(axis=1)
    recalls, precisions, f1s = [], [], []
    for m, g, t in zip(matched.tolist(), gt.tolist(), tool.tolist()):
        recall, precision = _ratio(m, g), _ratio(m, t)
        recalls.append(recall)
        precisions.append(precision)
        f1s.append(f1_score(precision, recall))
    lo, hi = int(alpha / 2 * n), int((1 - alpha / 2) * n) - 1

    def interval(values: list[float]) -> tuple[float, float]:
        ordered = sorted(values)
        return ordered[lo], ordered[hi]

    return {
        "method": "article bootstrap, random.Random(seed).choice, sorted-list indices (harness rule)",
        "n_resamples": n,
        "alpha": alpha,
        "seed": seed,
        # No reference concern in any article: every resample's recall and F1 are undefined, so are their intervals.
        "recall_micro": interval(recalls) if any(s.n_gt for s in scores) else None,
        "precision_micro": interval(precisions),
        "f1_micro_ours": interval(f1s) if any(s.n_gt for s in scores) else None,
    }


Counts = tuple[int, int, int]  # (n_matched, n_gt, n_tool) of one article


def _micro_f1_rows(matched: np.ndarray, gt: np.ndarray, tool: np.ndarray) -> np.ndarray:
    recall = np.divide(matched, gt, out=np.zeros(matched.shape, dtype=np.float64), where=gt > 0)
    precision = np.divide(matched, tool, out=np.zeros(matched.shape, dtype=np.float64), where=tool > 0)
    total = recall + precision
    return np.divide(2 * recall * precision, total, out=np.zeros(matched.shape, dtype=np.float64), where=total > 0)


def paired_bootstrap_f1(
    a: Sequence[Counts], b: Sequence[Counts], n: int = 1000, alpha: float = 0.05, seed: int = 42
) -> dict:
    """Micro F1 of A minus micro F1 of B on the same articles, with a paired bootstrap interval.

    `a[i]` and `b[i]` are the (n_matched, n_gt, n_tool) of one article under systems A and B. Every resample draws
    articles with replacement (the harness's draws, `harness_choice_indices`) and scores BOTH systems on the drawn
    articles, so what the two systems share (an easy article, a hard one) cancels in the difference: the interval is
    narrower than the one two separate CIs suggest. `share_not_above_zero` is the share of resamples where A does not
    beat B (a one-sided bootstrap p-value for "A > B").
    """
    if len(a) != len(b):
        raise ValueError(f"paired comparison needs the same articles: {len(a)} vs {len(b)} rows")
    if not a:
        raise ValueError("paired comparison needs at least one article")
    if n < 1:
        raise ValueError(f"paired comparison needs n >= 1 resamples, got {n}")
    arr_a, arr_b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
    if arr_a.shape != (len(a), 3) or arr_b.shape != (len(b), 3):
        raise ValueError("each article is (n_matched, n_gt, n_tool)")
    if (arr_a[:, 1] != arr_b[:, 1]).any():
        raise ValueError("paired articles must have the same reference concerns (n_gt differs)")
    draws = harness_choice_indices(seed, len(a), n * len(a)).reshape(n, len(a))

    def f1s(arr: np.ndarray) -> np.ndarray:
        sums = arr[draws].sum(axis=1)  # (n, 3)
        return _micro_f1_rows(sums[:, 0], sums[:, 1], sums[:, 2])

    diffs = np.sort(f1s(arr_a) - f1s(arr_b))
    totals_a, totals_b = arr_a.sum(axis=0), arr_b.sum(axis=0)
    f1_a = micro_prf(int(totals_a[0]), int(totals_a[1]), int(totals_a[2]))["f1"]
    f1_b = micro_prf(int(totals_b[0]), int(totals_b[1]), int(totals_b[2]))["f1"]
    lo, hi = int(alpha / 2 * n), int((1 - alpha / 2) * n) - 1
    ci = (float(diffs[lo]), float(diffs[max(hi, lo)]))
    return {
        "method": "paired article bootstrap (same draws for both systems, harness rule for the draws)",
        "n_articles": len(a), "n_resamples": n, "alpha": alpha, "seed": seed,
        "f1_a": f1_a, "f1_b": f1_b, "diff": f1_a - f1_b, "diff_ci": ci,
        "share_not_above_zero": float((diffs <= 0).mean()),
        "outcome": "A better" if ci[0] > 0 else "B better" if ci[1] < 0 else "no clear difference",
    }
