"""Score one system on one split: the single entry point of the scores asset (and of `bioreview score`)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from bioreview_assets.core.diagnostics import (
    DEFAULT_THRESHOLDS,
    NullPairing,
    SimWithMask,
    count_oracle,
    grouped_null_pairing,
    null_pairing,
    null_sims,
    row_best,
    score_null,
    similarity_histograms,
    threshold_curve,
)
from bioreview_assets.core.gt_filter import HARNESS_POLICY, filter_article
from bioreview_assets.core.judge import Judge, judged_matrix
from bioreview_assets.core.matcher_spec import MatcherSpec, short_hash
from bioreview_assets.core.matching import category_mask, cosine, jaccard_matrix
from bioreview_assets.core.metrics import ArticleScore, aggregate, bootstrap_ci, fold_by_cluster, score_article
from bioreview_assets.core.schema import ScorableConcern

Encode = Callable[[list[str]], np.ndarray]
# encode() must hand back unit rows; further off than this means the embedder did not normalise.
_NORM_TOLERANCE = 1e-3
_MAX_LISTED_UNKNOWN_IDS = 20


class PredictedConcern(BaseModel):
    """One generated concern as the scorer sees it (category/severity only matter for category agreement)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    text: str
    category: str | None = None
    severity: str | None = None


class ArticleRef(BaseModel):
    """One split article: its scorable reference concerns and how many figure concerns the GT filter removed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    article_id: str
    source: str
    gt: list[ScorableConcern]
    n_figure_excluded: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _concerns_belong_here(self) -> ArticleRef:
        strays = [c.concern_id for c in self.gt if c.article_id != self.article_id]
        if strays:
            raise ValueError(f"{self.article_id}: reference concerns of another article: {strays[:5]}")
        return self


@dataclass(frozen=True)
class SplitSimilarities:
    """Everything a re-score needs without re-embedding: per-article matrices, masks and the null's matrices."""

    spec: MatcherSpec
    embedder_identity: dict[str, Any] | None
    articles: tuple[ArticleRef, ...]
    predictions: tuple[tuple[PredictedConcern, ...], ...]  # aligned with articles
    in_output: tuple[bool, ...]
    sims: tuple[np.ndarray, ...]  # article i: (n_tool x n_gt)
    allowed: tuple[np.ndarray | None, ...]  # category-agreement masks, None when not required
    null_pairing: NullPairing | None
    null_sims: tuple[SimWithMask, ...]  # article i vs its null partner's references
    null_status: str
    unknown_prediction_ids: tuple[str, ...]
    # Scored units that belong together (the reviewer units of one article): the null never pairs two units of one
    # cluster and the bootstrap resamples clusters. None: every article is its own cluster.
    clusters: tuple[str, ...] | None = None

    @functools.cached_property
    def fingerprints(self) -> dict[str, str]:
        """Short hashes of the scored references and predictions: scores of different inputs never compare (W13)."""
        return {
            "references": short_hash([[a.article_id, [[c.concern_id, c.text, c.category, c.severity] for c in a.gt]]
                                      for a in self.articles]),
            "predictions": short_hash([[a.article_id, [[p.text, p.category, p.severity] for p in preds]]
                                       for a, preds in zip(self.articles, self.predictions)]),
        }

    @functools.cached_property
    def threshold_curve(self) -> list[dict[str, float]]:
        """P/R/F1 over DEFAULT_THRESHOLDS; independent of the chosen threshold, so computed once per split."""
        effective = [self.spec.effective(t) for t in DEFAULT_THRESHOLDS]
        curve = threshold_curve(self.sims, effective, self.spec.algorithm, self.allowed)
        return [
            {"configured_threshold": t, "effective_threshold": eff, "precision": p, "recall": r, "f1": f1}
            for t, (eff, p, r, f1) in zip(DEFAULT_THRESHOLDS, curve)
        ]


@dataclass(frozen=True)
class SplitScore:
    """Result of scoring a split: metrics record, per-article rows, match rows, histogram data."""

    metrics: dict[str, Any]
    articles: list[dict[str, Any]]
    matches: list[dict[str, Any]]
    histograms: dict[str, Any]
    article_scores: list[ArticleScore]
    similarities: SplitSimilarities


def _as_predicted(article_id: str, items: Sequence[Any]) -> tuple[PredictedConcern, ...]:
    out = []
    for item in items:
        if isinstance(item, PredictedConcern):
            out.append(item)
        elif isinstance(item, Mapping):
            out.append(PredictedConcern.model_validate(item))
        else:
            raise TypeError(f"{article_id}: a prediction must be a PredictedConcern or dict, not {type(item).__name__}")
    return tuple(out)


def _checked_embeddings(raw: Any, n_texts: int) -> np.ndarray:
    emb = np.asarray(raw, dtype=np.float32)
    if emb.ndim != 2 or emb.shape[0] != n_texts:
        raise ValueError(f"encode returned shape {emb.shape} for {n_texts} texts")
    if not np.isfinite(emb).all():
        raise ValueError("encode returned non-finite values")
    norms = np.linalg.norm(emb, axis=1)
    if n_texts and np.abs(norms - 1.0).max() > _NORM_TOLERANCE:
        raise ValueError(f"encode must return L2-normalised rows (norms in [{norms.min():.4f}, {norms.max():.4f}])")
    return emb


class _SimilaritySource:
    """Similarity between any article's generated concerns and any article's references (own or null partner)."""

    def __init__(self, spec: MatcherSpec, articles: Sequence[ArticleRef], preds: Sequence[Sequence[PredictedConcern]],
                 encode: Encode | None, judge: Judge | None = None) -> None:
        self._spec = spec
        self._judge = judge
        self._gt_texts = [[c.text for c in a.gt] for a in articles]
        self._tool_texts = [[p.text for p in ps] for ps in preds]
        self._gt_cats = [[c.category for c in a.gt] for a in articles]
        self._tool_cats = [[p.category for p in ps] for ps in preds]
        self._emb: np.ndarray | None = None
        if spec.method in ("embedding", "llm_judge"):
            assert encode is not None
            self._embed_once(encode)

    def _embed_once(self, encode: Encode) -> None:
        # One call for the whole split (unique texts, first-seen order): batching across articles is the
        # speed-up over upstream's two calls per article, and every text gets exactly one embedding.
        index: dict[str, int] = {}
        for texts in (*self._gt_texts, *self._tool_texts):
            for text in texts:
                index.setdefault(text, len(index))
        unique = list(index)
        self._emb = _checked_embeddings(encode(unique), len(unique)) if unique else np.zeros((0, 0), np.float32)
        self._gt_rows = [np.array([index[t] for t in texts], dtype=np.int64) for texts in self._gt_texts]
        self._tool_rows = [np.array([index[t] for t in texts], dtype=np.int64) for texts in self._tool_texts]

    def pair(self, tool_article: int, gt_article: int) -> tuple[np.ndarray, np.ndarray | None]:
        """(similarity, category mask or None) of one article's generated concerns vs one article's references."""
        if self._emb is not None:
            tool_rows, gt_rows = self._tool_rows[tool_article], self._gt_rows[gt_article]
            if len(tool_rows) and len(gt_rows):
                sim = cosine(self._emb[tool_rows], self._emb[gt_rows])
            else:
                sim = np.zeros((len(tool_rows), len(gt_rows)), dtype=np.float32)
        else:
            sim = jaccard_matrix(self._tool_texts[tool_article], self._gt_texts[gt_article])
        if self._spec.method == "llm_judge":
            assert self._judge is not None and self._spec.judge is not None
            sim = judged_matrix(sim, self._tool_texts[tool_article], self._gt_texts[gt_article],
                                self._spec.judge.prefilter_threshold, self._judge)
        allowed = None
        if self._spec.require_category_agreement:
            allowed = category_mask(self._tool_cats[tool_article], self._gt_cats[gt_article])
        return sim, allowed


def score_split(
    articles: Sequence[ArticleRef],
    predictions: Mapping[str, Sequence[PredictedConcern | Mapping[str, Any]]],
    encode: Encode | None,
    spec: MatcherSpec,
    bootstrap_n: int = 1000,
    *,
    embedder_identity: Mapping[str, Any] | None = None,
    null_seed: int = 42,
    bootstrap_seed: int = 42,
    clusters: Sequence[str] | None = None,
    judge: Judge | None = None,
) -> SplitScore:
    """Embed the split once, match every article, and return metrics, per-article rows, match rows and histograms.

    `clusters` (one label per article, e.g. the article of each reviewer unit of the reviewer ceiling): the null
    pairs units of different clusters only and the bootstrap resamples clusters.
    """
    if clusters is not None and len(clusters) != len(articles):
        raise ValueError(f"{len(clusters)} cluster labels for {len(articles)} articles")
    ids = [a.article_id for a in articles]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate article ids in the split: {dupes[:5]}")
    if spec.method in ("embedding", "llm_judge") and encode is None:
        raise ValueError(f"matcher {spec.name!r} is an embedding matcher: pass `encode`")
    if (spec.method == "llm_judge") != (judge is not None):
        raise ValueError(f"matcher {spec.name!r} ({spec.method}): pass `judge` exactly for an llm_judge matcher")
    if spec.method == "lexical" and encode is not None:
        raise ValueError(f"matcher {spec.name!r} is lexical: `encode` must be None (no embedding is used)")
    spec.identity(embedder_identity)  # fail before any work if the identity is incomplete or inconsistent
    split_ids = set(ids)
    preds = tuple(_as_predicted(a.article_id, predictions.get(a.article_id, ())) for a in articles)
    source = _SimilaritySource(spec, articles, preds, encode, judge)
    own = [source.pair(i, i) for i in range(len(articles))]
    pairing, null_status = None, "computed"
    if clusters is not None:
        if len(set(clusters)) >= 2:
            pairing = grouped_null_pairing(ids, [a.source for a in articles], clusters, null_seed)
        else:
            null_status = "not computed: a shuffled null needs at least two clusters"
    elif len(articles) >= 2:
        pairing = null_pairing(ids, [a.source for a in articles], null_seed)
    else:
        null_status = "not computed: a shuffled null needs at least two articles"
    similarities = SplitSimilarities(
        spec=spec,
        embedder_identity=dict(embedder_identity) if embedder_identity is not None else None,
        articles=tuple(articles),
        predictions=preds,
        in_output=tuple(a.article_id in predictions for a in articles),
        sims=tuple(sim for sim, _ in own),
        allowed=tuple(mask for _, mask in own),
        null_pairing=pairing,
        null_sims=tuple(null_sims(pairing, source.pair)) if pairing is not None else (),
        null_status=null_status,
        unknown_prediction_ids=tuple(sorted(set(predictions) - split_ids)),
        clusters=tuple(clusters) if clusters is not None else None,
    )
    return _score(similarities, spec, bootstrap_n, bootstrap_seed)


def rescore_threshold(
    similarities: SplitSimilarities, threshold: float, bootstrap_n: int = 1000, *, bootstrap_seed: int = 42
) -> SplitScore:
    """Re-score a split at another configured threshold from its stored similarity matrices (no embedding)."""
    spec = MatcherSpec.model_validate({**similarities.spec.model_dump(), "threshold": threshold})
    return _score(similarities, spec, bootstrap_n, bootstrap_seed)


def _score(similarities: SplitSimilarities, spec: MatcherSpec, bootstrap_n: int, bootstrap_seed: int) -> SplitScore:
    identity = spec.identity(similarities.embedder_identity)
    threshold = spec.effective_threshold
    scores = [
        score_article(a.article_id, a.source, sim, a.gt, threshold, spec.algorithm, allowed)
        for a, sim, allowed in zip(similarities.articles, similarities.sims, similarities.allowed)
    ]
    null = None
    if similarities.null_pairing is not None:
        null = score_null(similarities.null_pairing, similarities.null_sims, threshold, spec.algorithm)
    metrics = aggregate(scores)
    oracle = count_oracle(scores)
    resampled = scores if similarities.clusters is None else fold_by_cluster(scores, similarities.clusters)
    metrics.update(
        matcher=identity,
        matcher_id=identity["hash"],
        configured_threshold=spec.threshold,
        effective_threshold=threshold,
        ci=bootstrap_ci(resampled, n=bootstrap_n, seed=bootstrap_seed) if bootstrap_n and scores else None,
        **({"n_clusters": len(resampled)} if similarities.clusters is not None else {}),
        null_f1=null.f1 if null is not None else None,
        null=null.summary() if null is not None else {"status": similarities.null_status},
        count_oracle_f1=oracle["f1"],
        count_oracle=oracle,
        threshold_curve=similarities.threshold_curve,
        input_fingerprints=similarities.fingerprints,
        coverage=_coverage(similarities),
    )
    histograms = similarity_histograms(
        np.array([s for score in scores for _, _, s in score.pairs], dtype=np.float64),
        null.best_sims if null is not None else None,
        np.concatenate([row_best(sim) for sim in similarities.sims]) if scores else np.zeros(0),
    )
    return SplitScore(
        metrics=metrics,
        articles=_article_rows(similarities, scores, identity["hash"]),
        matches=_match_rows(similarities, scores, identity["hash"]),
        histograms=histograms,
        article_scores=scores,
        similarities=similarities,
    )


def _coverage(similarities: SplitSimilarities) -> dict[str, Any]:
    n_in = sum(similarities.in_output)
    unknown = similarities.unknown_prediction_ids
    n_tool = [len(p) for p in similarities.predictions]
    n_gt = [len(a.gt) for a in similarities.articles]
    n = len(n_gt)
    return {
        "n_articles_in_output": n_in,
        "n_articles_missing_from_output": len(similarities.articles) - n_in,
        "n_unknown_prediction_ids": len(unknown),
        "unknown_prediction_ids_sample": list(unknown[:_MAX_LISTED_UNKNOWN_IDS]),
        "n_figure_excluded": sum(a.n_figure_excluded for a in similarities.articles),
        # Count diagnostics (harness W1): under a weak matcher F1 tracks these, not content.
        "mean_n_tool": sum(n_tool) / n if n else 0.0,
        "mean_n_gt": sum(n_gt) / n if n else 0.0,
        "n_articles_tool_ge_gt": sum(1 for t, g in zip(n_tool, n_gt) if t >= g),
    }


def _article_rows(similarities: SplitSimilarities, scores: Sequence[ArticleScore], matcher_id: str) -> list[dict]:
    return [
        {
            "matcher_id": matcher_id,
            "article_id": s.article_id,
            "source": s.source,
            "n_gt": s.n_gt,
            "n_tool": s.n_tool,
            "n_matched": s.n_matched,
            "recall": s.recall,
            "precision": s.precision,
            "f1": s.f1,
            "soft_credit": s.soft_credit,
            "in_output": in_output,
            "n_figure_excluded": article.n_figure_excluded,
        }
        for s, article, in_output in zip(scores, similarities.articles, similarities.in_output)
    ]


def _match_rows(similarities: SplitSimilarities, scores: Sequence[ArticleScore], matcher_id: str) -> list[dict]:
    rows: list[dict] = []
    for article, preds, sim, score in zip(
        similarities.articles, similarities.predictions, similarities.sims, scores
    ):
        by_gt = {j: (i, s) for i, j, s in score.pairs}
        matched_tool = {i for i, _, _ in score.pairs}
        base = {"matcher_id": matcher_id, "article_id": article.article_id, "source": article.source}
        # As Python lists: the loops below read them per concern (a NumPy scalar per read is the slow part).
        nearest_generated = np.argmax(sim, axis=0).tolist() if sim.size else None
        best_reference = sim.max(axis=1).tolist() if sim.size else None
        similarity = sim.tolist()
        for j, concern in enumerate(article.gt):
            if j in by_gt:
                gen, value = by_gt[j]
            elif preds:
                # Unmatched reference: show its most similar generated concern (first index on ties).
                gen = nearest_generated[j]
                value = similarity[gen][j]
            else:
                gen, value = None, None
            rows.append({
                **base, "row_kind": "reference",
                "gt_concern_id": concern.concern_id, "gt_index": j, "gt_text": concern.text,
                "category": concern.category, "severity": concern.severity,
                "generated_index": gen,
                "generated_text": preds[gen].text if gen is not None else None,
                "generated_category": preds[gen].category if gen is not None else None,
                "generated_severity": preds[gen].severity if gen is not None else None,
                "similarity": value, "matched": j in by_gt,
            })
        for i, pred in enumerate(preds):
            if i in matched_tool:
                continue
            rows.append({
                **base, "row_kind": "generated_only",
                "gt_concern_id": None, "gt_index": None, "gt_text": None, "category": None, "severity": None,
                "generated_index": i, "generated_text": pred.text,
                "generated_category": pred.category, "generated_severity": pred.severity,
                # Best similarity to any reference of the article: how close this unmatched concern came.
                "similarity": best_reference[i] if sim.shape[1] else None, "matched": False,
            })
    return rows


def article_refs(articles) -> list[ArticleRef]:
    """Reference concerns as the harness counts them (flagged figure concerns excluded, nothing else)."""
    refs = []
    for article in articles:
        filtered = filter_article(article, HARNESS_POLICY)
        refs.append(ArticleRef(article_id=article.id, source=article.source, gt=filtered.kept,
                               n_figure_excluded=filtered.removed["figure_flag"]))
    return refs
