"""Checks on systems' concerns: no article exceeds the configured cap (single models and ensembles alike)."""

import dagster as dg


CONCERNS = dg.AssetKey("concerns")
ENSEMBLE_CONCERNS = dg.AssetKey("ensemble_concerns")
_CAP = "No article has more concerns than the configured cap (so systems are compared at the same budget)"
CONCERNS_CHECKS = [dg.AssetCheckSpec("cap_respected", asset=CONCERNS, description=_CAP)]
ENSEMBLE_CHECKS = [dg.AssetCheckSpec("cap_respected", asset=ENSEMBLE_CONCERNS, description=_CAP)]


def evaluate_cap(by_article: dict[str, list], cap: int | None, label: str = "") -> list[dg.AssetCheckResult]:
    """Derived from the concerns as written; a policy without a cap (raw, dedup) cannot break it."""
    counts = {article: len(items) for article, items in by_article.items()}
    over = sorted(article for article, n in counts.items() if cap is not None and n > cap)
    most = max(counts.values(), default=0)
    where = f"{label}: " if label else ""
    if cap is None:
        description = f"{where}no cap in this policy (at most {most} concerns per article): nothing to break"
    elif over:
        description = (f"{where}{len(over)} of {len(counts)} articles exceed the cap of {cap} (up to {most}): "
                       "this system is compared at a larger budget than the others")
    else:
        description = f"{where}at most {most} concerns per article, within the cap of {cap}"
    return [dg.AssetCheckResult(
        check_name="cap_respected", passed=not over, description=description,
        metadata={"cap": cap, "max_per_article": max(counts.values(), default=0), "articles_over_cap": len(over),
                  "examples": dg.MetadataValue.json(over[:5])},
    )]
