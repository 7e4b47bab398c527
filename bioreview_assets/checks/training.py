"""Checks on adapters: the loss on the fixed val subset went down over training (W18)."""

import dagster as dg

ADAPTER = dg.AssetKey("adapter")
ADAPTER_CHECKS = [
    dg.AssetCheckSpec("val_loss_improved", asset=ADAPTER,
                      description="Loss on the fixed val subset is lower at the end than at the first evaluation"),
]


def evaluate_adapter_checks(val_history: list) -> list[dg.AssetCheckResult]:
    """From the recorded (step, val loss) points; fewer than two points cannot show learning, so they warn."""
    points = [(int(step), float(loss)) for step, loss in val_history]
    if len(points) < 2:
        return [dg.AssetCheckResult(
            check_name="val_loss_improved", passed=False, severity=dg.AssetCheckSeverity.WARN,
            metadata={"val_points": len(points),
                      "reason": "fewer than 2 val evaluations: raise eval_subset or lower save_steps"},
        )]
    (first_step, first), (last_step, last) = points[0], points[-1]
    return [dg.AssetCheckResult(
        check_name="val_loss_improved", passed=last < first, severity=dg.AssetCheckSeverity.WARN,
        metadata={"first_val_loss": first, "first_step": first_step, "last_val_loss": last, "last_step": last_step,
                  "best_val_loss": min(loss for _, loss in points), "val_points": len(points)},
    )]
