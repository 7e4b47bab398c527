"""Checks on scores: the matcher must tell an article's own concerns from another article's.

Why: docs/reference.md, harness W1."""

import dagster as dg


SCORES = dg.AssetKey("scores")
NULL_RATIO_LIMIT = 0.5
MIN_SIGNAL_F1 = 0.05  # below this F1 there is nothing for the matcher to discriminate: the premise does not hold
SCORE_CHECKS = [
    dg.AssetCheckSpec(
        "matcher_discriminates",
        asset=SCORES,
        description="Shuffled-article null F1 must stay below half the real F1 (otherwise F1 rewards counts)",
    ),
]


def discrimination_verdict(f1: float | None, null_f1: float | None, null_status: str = "") -> tuple[bool, bool, str]:
    """(passed, applicable, one-line reason) of matcher_discriminates for one score.

    Below MIN_SIGNAL_F1 the question "is F1 more than the concern count?" has no subject: the check passes as not
    applicable and says so, so that real failures (a high null beside a real F1) are not drowned by empty systems.
    """
    if f1 is None:
        return True, False, "not applicable: no reference concerns, so F1 is undefined"
    if null_f1 is None:
        return False, True, f"null F1 not computed ({null_status or 'unknown reason'})"
    if f1 < MIN_SIGNAL_F1:
        return True, False, (f"not applicable: F1 {f1:.3f} is below {MIN_SIGNAL_F1} - the system matched almost "
                             f"nothing, so there is no score for the matcher to discriminate")
    ratio = null_f1 / f1
    if ratio < NULL_RATIO_LIMIT:
        return True, True, (f"null F1 {null_f1:.3f} is {ratio:.0%} of F1 {f1:.3f} (limit {NULL_RATIO_LIMIT:.0%}): "
                            f"the score rewards content, not only the concern count")
    return False, True, (f"null F1 {null_f1:.3f} is {ratio:.0%} of F1 {f1:.3f} (limit {NULL_RATIO_LIMIT:.0%}): "
                         f"most of this F1 is earned by the concern count alone")


def _r(value):
    return round(value, 3) if isinstance(value, float) else value


def evaluate_score_checks(metrics: dict, label: str = "") -> list[dg.AssetCheckResult]:
    """matcher_discriminates: fails when null F1 >= 0.5 x F1; not applicable (passed, said so) when F1 < 0.05.

    label (the partition, "system / split") opens the description, so a list of results says whose they are.
    """
    real, null = metrics["f1_micro"], metrics["null_f1"]
    passed, applicable, reason = discrimination_verdict(real, null, (metrics.get("null") or {}).get("status", ""))
    description = f"{label}: {reason}" if label else reason
    return [
        dg.AssetCheckResult(
            check_name="matcher_discriminates",
            passed=passed,
            description=description,
            metadata={"reason": reason, "applicable": applicable, "f1": _r(real), "null_f1": _r(null),
                      **({"ratio": round(null / real, 3)} if real and null is not None else {}),
                      "limit": NULL_RATIO_LIMIT, "count_oracle_f1": _r(metrics["count_oracle_f1"])},
        )
    ]
