"""What the Dagster UI shows beside a concerns partition: coverage, concern counts and what post-processing removed."""

from __future__ import annotations

import dagster as dg

from bioreview_assets.services.system_concerns import SystemConcerns


def concerns_metadata(system: str, run: SystemConcerns) -> dict:
    """The materialisation metadata of one concerns partition."""
    by_article, n_concerns = run.by_article, run.n_concerns
    per_source: dict[str, list[int]] = {}
    for article_id, kept in by_article.items():
        per_source.setdefault(run.sources[article_id], []).append(len(kept))
    return {
        "system": system,
        "articles_covered": len(by_article),
        "articles_in_split": len(run.articles),
        "n_concerns": n_concerns,
        "concerns_per_article": round(n_concerns / max(len(by_article), 1), 2),
        "removed": dg.MetadataValue.json(run.removed),
        "concerns_per_article_by_source": dg.MetadataValue.json(
            {src: round(sum(v) / len(v), 2) for src, v in sorted(per_source.items())}
        ),
        "path": run.path,
        **({"lineage": dg.MetadataValue.json(run.meta["lineage"])} if "lineage" in run.meta else {}),
    }
