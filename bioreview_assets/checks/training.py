"""Checks on adapters: the loss on the fixed val subset went down over training (W18)."""

import dagster as dg


ADAPTER = dg.AssetKey("adapter")
ADAPTER_CHECKS = [
    dg.AssetCheckSpec("val_loss_improved", asset=ADAPTER,
                      description="Loss on the fixed val subset is lower at the end than at the first evaluation"),
]


def evaluate_adapter_checks(val_history: list, label: str = "") -> list[dg.AssetCheckResult]:
    """From the recorded (step, val loss) points; fewer than two points cannot show learning, so they warn."""
    points = [(int(step), float(loss)) for step, loss in val_history]
    where = f"{label}: " if label else ""
    if len(points) < 2:
        return [dg.AssetCheckResult(
            check_name="val_loss_improved", passed=False, severity=dg.AssetCheckSeverity.WARN,
            description=f"{where}{len(points)} val evaluation(s): fewer than 2 cannot show learning "
                        "(raise eval_subset or lower save_steps)",
            metadata={"val_points": len(points),
                      "reason": "fewer than 2 val evaluations: raise eval_subset or lower save_steps"},
        )]
    (first_step, first), (last_step, last) = points[0], points[-1]
    change = (last - first) / first if first else 0.0
    verdict = "the adapter learned the task" if last < first else "no learning on held-out data (or overfitting)"
    return [dg.AssetCheckResult(
        check_name="val_loss_improved", passed=last < first, severity=dg.AssetCheckSeverity.WARN,
        description=f"{where}val loss {first:.3f} at step {first_step} -> {last:.3f} at step {last_step} "
                    f"({change:+.1%}): {verdict}",
        metadata={"first_val_loss": first, "first_step": first_step, "last_val_loss": last, "last_step": last_step,
                  "best_val_loss": min(loss for _, loss in points), "val_points": len(points)},
    )]
