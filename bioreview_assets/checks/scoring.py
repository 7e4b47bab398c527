"""Checks on scores: the matcher must tell an article's own concerns from another article's (W1)."""

import dagster as dg

SCORES = dg.AssetKey("scores")
NULL_RATIO_LIMIT = 0.5
SCORE_CHECKS = [
    dg.AssetCheckSpec(
        "matcher_discriminates",
        asset=SCORES,
        description="Shuffled-article null F1 must stay below half the real F1 (otherwise F1 rewards counts)",
    ),
]


def evaluate_score_checks(metrics: dict) -> list[dg.AssetCheckResult]:
    """matcher_discriminates: fails when null F1 >= 0.5 x real F1 (or when there is no signal at all)."""
    real, null = metrics["f1_micro"], metrics["null_f1"]
    if null is None:
        return [dg.AssetCheckResult(check_name="matcher_discriminates", passed=False,
                                    metadata={"reason": metrics["null"].get("status", "null not computed")})]
    passed = real > 0 and null < NULL_RATIO_LIMIT * real
    return [
        dg.AssetCheckResult(
            check_name="matcher_discriminates",
            passed=passed,
            metadata={"f1": real, "null_f1": null, "ratio": round(null / real, 4) if real else None,
                      "limit": NULL_RATIO_LIMIT, "count_oracle_f1": metrics["count_oracle_f1"]},
        )
    ]
