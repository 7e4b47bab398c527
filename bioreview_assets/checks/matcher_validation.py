"""Checks on matcher_validation: the matcher's "same concern" must agree with labelled pairs at its threshold."""

import dagster as dg

MATCHER_VALIDATION = dg.AssetKey("matcher_validation")
VALIDATION_CHECKS = [
    dg.AssetCheckSpec(
        "matcher_agrees_with_labels",
        asset=MATCHER_VALIDATION,
        description="F1 of 'same concern' (similarity >= the matcher's threshold) against labelled pairs must reach "
                    "matcher_validation.min_f1 on every source of labels (configs/project.yaml)",
    ),
]


def evaluate_matcher_validation(results: dict[str, dict], min_f1: float, label: str = "") -> list[dg.AssetCheckResult]:
    """Fails when any source's F1 at the matcher's threshold is below min_f1; names each source's F1 and CI."""
    below = {name: r for name, r in results.items() if r["f1"] < min_f1}
    parts = []
    for name, r in results.items():
        lo, hi = r["ci"].get("f1", (None, None))
        parts.append(f"{name}: F1 {r['f1']:.3f} [{lo:.3f}, {hi:.3f}] on {r['n_pairs']} pairs (P {r['precision']:.3f}, "
                     f"R {r['recall']:.3f}; best threshold {r['best_configured_threshold']})")
    verdict = (f"below the bar of {min_f1}: {', '.join(below)}" if below else f"every source reaches {min_f1}")
    where = f"{label}: " if label else ""
    return [dg.AssetCheckResult(
        check_name="matcher_agrees_with_labels", passed=not below,
        description=f"{where}{verdict}; " + "; ".join(parts),
        metadata={"min_f1": min_f1, "f1": dg.MetadataValue.json({n: round(r["f1"], 3) for n, r in results.items()}),
                  "below": dg.MetadataValue.json(sorted(below))},
    )]
